// Issue #15 finding 9: hardening missed Node options. The two reproductions, as child processes.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { HardeningReport, SecurityPostureFacts } from '../../src/hardening/types.ts';
import { baseEnv, Child, FIXTURE, PROBE, sleep } from './helpers.ts';

type PostureOut = { pid: number; report: HardeningReport; posture: SecurityPostureFacts };
type Ready = { pid: number; ready: boolean; report: HardeningReport };

const LINUX = process.platform === 'linux';

describe("Node options that are not the launcher's own re-execute", { skip: !LINUX && 'Linux-only' }, () => {
  let dir: string;
  const children: Child[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mesh-node-options-'));
  });
  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  it('a config file whose nodeOptions require code: the posture comes from a clean child and says so', async () => {
    const marker = join(dir, 'config-probe');
    const config = join(dir, 'node.config.json');
    await writeFile(config, JSON.stringify({ nodeOptions: { require: [PROBE] } }));
    const c = new Child(FIXTURE, ['posture'], {
      execArgv: [`--experimental-config-file=${config}`],
      env: baseEnv({ PROBE_MARKER: marker }),
    });
    children.push(c);
    const out = await c.json<PostureOut>();
    assert.equal((await c.exited).code, 0, c.stderr);
    const ran = (await readFile(marker, 'utf8')).trim().split('\n');
    assert.deepEqual(ran, [`${c.proc.pid} -`], 'the injected code ran in the first process only');
    assert.notEqual(out.pid, c.proc.pid, 'the posture came from the re-executed child');
    assert.equal(out.posture.startedWithUnsafeEnvironment, true);
    assert.equal(out.posture.reexecutedClean, true);
    assert.deepEqual(out.posture.unsafeEnvironment, ['--experimental-config-file']);
    assert.ok(!JSON.stringify(out).includes(dir), 'option values never reach the posture');
  });

  it('--heapsnapshot-signal: kill -USR2 writes no heap snapshot', async () => {
    const cwd = await mkdtemp(join(dir, 'cwd-'));
    const c = new Child(FIXTURE, ['serve'], { execArgv: ['--heapsnapshot-signal=SIGUSR2'], cwd });
    children.push(c);
    const ready = await c.json<Ready>();
    process.kill(ready.pid, 'SIGUSR2');
    await sleep(3_000);
    const written = (await readdir(cwd)).filter((name) => name.endsWith('.heapsnapshot'));
    assert.deepEqual(written, [], 'no heap snapshot of the serving process');
    assert.notEqual(ready.pid, c.proc.pid, 're-executed without the option');
    assert.deepEqual(ready.report.environment.unsafeNames, ['--heapsnapshot-signal']);
  });
});
