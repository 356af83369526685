// Child-process tests of the real hardening on this Linux machine (not skipped in CI).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { HardeningReport, SecurityPostureFacts } from '../../src/hardening/types.ts';
import { BIN, baseEnv, Child, FIXTURE, PROBE, sleep } from './helpers.ts';

type Ready = { pid: number; ready: boolean; report: HardeningReport };
type PostureOut = { pid: number; report: HardeningReport; posture: SecurityPostureFacts; mode?: string };

const LINUX = process.platform === 'linux';
let dir: string;
const children: Child[] = [];
function child(...args: ConstructorParameters<typeof Child>): Child {
  const c = new Child(...args);
  children.push(c);
  return c;
}

async function markerLines(file: string): Promise<string[]> {
  try {
    return (await readFile(file, 'utf8')).trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

describe('hardened process (Linux)', { skip: !LINUX && 'Linux-only process tests' }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mesh-hardening-'));
  });
  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  it('has a core limit of 0/0 as the kernel reports it', async () => {
    const coreLine = async (pid: number | 'self') =>
      (await readFile(`/proc/${pid}/limits`, 'utf8'))
        .split('\n')
        .find((l) => l.startsWith('Max core file size'));
    const c = child(FIXTURE, ['serve']);
    const ready = await c.json<Ready>();
    assert.match((await coreLine(ready.pid)) ?? '', /^Max core file size\s+0\s+0\s+bytes/);
    assert.deepEqual(
      ready.report.steps.map((s) => [s.name, s.achieved]),
      [
        ['core-dumps-disabled', true],
        ['debugger-blocked', true],
        ['inspector-closed', true],
        ['environment-clean', true],
      ],
    );
    // Control: an unhardened node keeps the inherited limit, so the check above can fail
    // (unless this environment already forces 0/0 on everything).
    const inherited = (await coreLine('self')) ?? '';
    if (!/^Max core file size\s+0\s+0\s/.test(inherited)) {
      const control = child('-e', [
        'console.log(JSON.stringify({ pid: process.pid })); setInterval(() => {}, 1000)',
      ]);
      const cp = await control.json<{ pid: number }>();
      assert.doesNotMatch((await coreLine(cp.pid)) ?? '', /^Max core file size\s+0\s+0\s/);
      await control.stop();
    }
    await c.stop();
  });

  it('SIGUSR1 does not open an inspector; an unhardened control does', async () => {
    // Control first: port 0 so concurrent tests never collide on 9229.
    const control = child(
      '-e',
      ['console.log(JSON.stringify({ pid: process.pid })); setInterval(() => {}, 1000)'],
      {
        execArgv: ['--inspect-port=0'],
      },
    );
    const cp = await control.json<{ pid: number }>();
    process.kill(cp.pid, 'SIGUSR1');
    await control.waitFor(
      () => (/Debugger listening on ws:\/\//.test(control.stderr) ? true : undefined),
      15_000,
      'control inspector',
    );
    await control.stop();

    const c = child(FIXTURE, ['serve']);
    const ready = await c.json<Ready>();
    process.kill(ready.pid, 'SIGUSR1');
    await sleep(750);
    c.send('url');
    const { url } = await c.json<{ url: string | null }>();
    assert.equal(url, null);
    assert.doesNotMatch(c.stderr, /Debugger listening/);
    assert.equal(c.proc.exitCode, null, 'SIGUSR1 did not kill the process');
    await c.stop();
  });

  it('a start with NODE_OPTIONS=--require ends in a clean re-executed process where the probe did not run', async () => {
    const marker = join(dir, 'probe-reexec');
    const c = child(FIXTURE, ['posture'], {
      env: baseEnv({ NODE_OPTIONS: `--require ${PROBE}`, PROBE_MARKER: marker }),
    });
    const out = await c.json<PostureOut>();
    const { code } = await c.exited;
    assert.equal(code, 0);
    const lines = await markerLines(marker);
    assert.deepEqual(
      lines,
      [`${c.proc.pid} -`],
      'the probe ran in the parent only (proves the test can fail)',
    );
    assert.notEqual(out.pid, c.proc.pid, 'the posture came from the re-executed child');
    assert.equal(out.posture.reexecutedClean, true);
    assert.equal(out.posture.startedWithUnsafeEnvironment, true);
    assert.equal(out.posture.environmentClean, true);
    assert.deepEqual(out.posture.unsafeEnvironment, ['NODE_OPTIONS']);
    assert.ok(!JSON.stringify(out).includes(PROBE), 'variable values never reach the posture');
    const inspector = out.report.steps.find((s) => s.name === 'inspector-closed');
    assert.equal(inspector?.achieved, true);
    assert.match(inspector?.detail ?? '', /--disable-sigusr1/);
  });

  it('with the opt-out the probe runs and the posture says so', async () => {
    for (const [env, args] of [
      [{ MESH_LLM_ALLOW_UNSAFE_ENV: '1' }, ['posture']],
      [{}, ['posture', '--allow-unsafe-env']],
    ] as const) {
      const marker = join(dir, `probe-optout-${args.length}`);
      const c = child(FIXTURE, [...args], {
        env: baseEnv({ ...env, NODE_OPTIONS: `--require ${PROBE}`, PROBE_MARKER: marker }),
      });
      const out = await c.json<PostureOut>();
      await c.exited;
      assert.equal(out.pid, c.proc.pid, 'no re-exec');
      assert.deepEqual(await markerLines(marker), [`${c.proc.pid} -`]);
      assert.equal(out.posture.startedWithUnsafeEnvironment, true);
      assert.equal(out.posture.environmentClean, false);
      assert.equal(out.posture.reexecutedClean, false);
      assert.deepEqual(out.posture.unsafeEnvironment, ['NODE_OPTIONS']);
    }
  });

  it('an LD_PRELOAD start re-executes into a process without the preloaded library', async () => {
    const lib = 'libbz2.so.1.0'; // a real library node itself never loads
    const c = child(FIXTURE, ['serve'], { env: baseEnv({ LD_PRELOAD: lib }) });
    const ready = await c.json<Ready>();
    assert.notEqual(ready.pid, c.proc.pid);
    const parentMaps = await readFile(`/proc/${c.proc.pid}/maps`, 'utf8');
    const childMaps = await readFile(`/proc/${ready.pid}/maps`, 'utf8');
    assert.ok(parentMaps.includes('libbz2'), 'the parent was preloaded (proves the test can fail)');
    assert.ok(!childMaps.includes('libbz2'), 'the re-executed child was not');
    assert.deepEqual(ready.report.environment.unsafeNames, ['LD_PRELOAD']);
    assert.equal(ready.report.environment.reexecutedClean, true);
    c.send('exit');
    assert.equal((await c.exited).code, 0);
  });

  it('the re-executing parent relays the exit code and forwards SIGTERM', async () => {
    const a = child(FIXTURE, ['serve', '7'], { env: baseEnv({ NODE_PATH: '/nonexistent' }) });
    const ra = await a.json<Ready>();
    assert.notEqual(ra.pid, a.proc.pid);
    a.send('exit');
    assert.equal((await a.exited).code, 7);

    const b = child(FIXTURE, ['serve'], { env: baseEnv({ NODE_PATH: '/nonexistent' }) });
    const rb = await b.json<Ready>();
    assert.notEqual(rb.pid, b.proc.pid);
    b.proc.kill('SIGTERM');
    assert.deepEqual(await b.json(), { signal: 'SIGTERM' });
    assert.equal((await b.exited).code, 0);
  });

  it('bin/mesh-llm.js posture --json re-executes and reports a measured posture', async () => {
    const c = child(BIN, ['posture', '--json'], {
      env: baseEnv({ NODE_OPTIONS: '--max-old-space-size=256' }),
    });
    const { code } = await c.exited;
    assert.equal(code, 0, c.stderr);
    const out = JSON.parse(c.stdout) as { posture: SecurityPostureFacts };
    assert.equal(out.posture.reexecutedClean, true);
    assert.equal(out.posture.debuggerBlocked, true);
    assert.equal(out.posture.coreDumpsDisabled, true);
    assert.match(out.posture.binaryHash, /^[0-9a-f]{64}$/);
  });

  it('bin/mesh-llm.js --help works with an unsafe environment without re-executing', async () => {
    const c = child(BIN, ['--help'], { env: baseEnv({ NODE_PATH: '/nonexistent' }) });
    const { code } = await c.exited;
    assert.equal(code, 0, c.stderr);
    assert.match(c.stdout, /Usage: mesh-llm/);
  });
});
