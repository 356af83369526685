// A non-root process of the same user must not be able to ptrace-attach to a hardened node,
// while it can attach to an unhardened control (which proves the test can fail).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { baseEnv, Child, FIXTURE, PTRACE_HELPER } from './helpers.ts';

const USER = 'meshllm-ptrace-test';
const isRoot = process.getuid?.() === 0;
const skip =
  process.platform !== 'linux'
    ? 'Linux-only'
    : !isRoot
      ? 'SKIPPED LOUDLY: needs root to create an unprivileged test user (run the suite as root in CI)'
      : false;

function lookupUser(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', USER], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

function ensureUser(): { uid: number; gid: number } {
  const existing = lookupUser();
  if (existing) return existing;
  try {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', USER], {
      stdio: 'pipe',
    });
  } catch {
    // A concurrent run may have created it first; the lookup below decides.
  }
  const created = lookupUser();
  if (!created) throw new Error(`could not create test user ${USER}`);
  return created;
}

/**
 * The test user must reach the checkout (node binary, fixture, node_modules). A clone inside a
 * 0700 directory (e.g. under /root or mktemp -d) blocks that, so grant search (o+x, not read) on
 * the blocking ancestors for the duration of the test, and put the modes back afterwards.
 */
function grantTraversal(path: string, restore: [string, number][]): void {
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    const mode = statSync(dir).mode & 0o7777;
    if ((mode & 0o001) === 0) {
      chmodSync(dir, mode | 0o001);
      restore.push([dir, mode]);
    }
    if (dirname(dir) === dir) return;
  }
}

describe('ptrace attach by the same unprivileged user', { skip }, () => {
  let ids: { uid: number; gid: number };
  const children: Child[] = [];
  const restoreModes: [string, number][] = [];
  const env = () => baseEnv({ HOME: '/tmp' });

  before(() => {
    if (skip) return;
    ids = ensureUser();
    grantTraversal(dirname(process.execPath), restoreModes);
    grantTraversal(dirname(FIXTURE), restoreModes);
  });
  after(async () => {
    await Promise.all(children.map((c) => c.stop()));
    for (const [dir, mode] of restoreModes.reverse()) chmodSync(dir, mode);
  });

  async function attach(pid: number): Promise<{ ok: boolean; errno: number }> {
    const helper = new Child(PTRACE_HELPER, [String(pid)], { env: env(), ...ids });
    children.push(helper);
    const out = await helper.json<{ ok: boolean; errno: number }>();
    await helper.exited;
    return out;
  }

  /** gdb as a real-world attacker, when installed: its own words say whether it attached. */
  function gdbAttach(pid: number): string {
    try {
      return execFileSync(
        'gdb',
        ['-nx', '-batch', '-p', String(pid), '-ex', 'info inferiors', '-ex', 'detach'],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
          timeout: 60_000,
          uid: ids.uid,
          gid: ids.gid,
          env: env(),
        },
      );
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      return `${e.stdout ?? ''}${e.stderr ?? ''}`;
    }
  }
  const hasGdb = existsSync('/usr/bin/gdb');

  it('succeeds against an unhardened control and fails against a hardened node', async () => {
    const control = new Child(
      '-e',
      ['console.log(JSON.stringify({ pid: process.pid })); setInterval(() => {}, 1000)'],
      {
        env: env(),
        ...ids,
      },
    );
    children.push(control);
    const cp = await control.json<{ pid: number }>();
    assert.equal(
      (await stat(`/proc/${cp.pid}/mem`)).uid,
      ids.uid,
      'control /proc/PID/mem belongs to the user (dumpable)',
    );
    const controlAttach = await attach(cp.pid);
    assert.equal(controlAttach.ok, true, `control attach must succeed (errno ${controlAttach.errno})`);
    if (hasGdb) assert.match(gdbAttach(cp.pid), /detached/, 'gdb attaches to the control');

    const hardened = new Child(FIXTURE, ['serve'], { env: env(), ...ids });
    children.push(hardened);
    const ready = await hardened.json<{
      pid: number;
      report: { steps: { name: string; achieved: boolean }[] };
    }>();
    assert.equal(ready.report.steps.find((s) => s.name === 'debugger-blocked')?.achieved, true);
    // The kernel hands a non-dumpable process's /proc/PID files to root.
    assert.equal(
      (await stat(`/proc/${ready.pid}/mem`)).uid,
      0,
      'hardened /proc/PID/mem is root-owned (non-dumpable)',
    );
    const hardenedAttach = await attach(ready.pid);
    assert.equal(hardenedAttach.ok, false, 'hardened attach must fail');
    assert.equal(hardenedAttach.errno, 1, 'EPERM');
    if (hasGdb) {
      const out = gdbAttach(ready.pid);
      assert.match(out, /Operation not permitted/, 'gdb cannot attach to the hardened node');
      assert.doesNotMatch(out, /detached/);
    }
    assert.equal(hardened.proc.exitCode, null, 'the hardened node keeps running');
  });
});
