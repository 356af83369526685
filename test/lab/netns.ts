/**
 * Thin, bounded wrappers over iproute2 and iptables for the network-namespace lab.
 *
 * Every command runs with a namespace argument (`ip -n NS …`, `ip netns exec NS …`): nothing here
 * touches the root namespace's links, routes or firewall. Links are created inside a namespace
 * with their peer placed straight into another one, so no interface ever exists in the root
 * namespace, even for a moment.
 */
import { execFile, execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Every lab namespace is named `mlab-<pid of the test process>-<role>`. */
export const LAB_PREFIX = 'mlab';
const COMMAND_TIMEOUT_MS = 15_000;

export class LabCommandError extends Error {}

/** Runs a command with a deadline; rejects with its stderr on failure. */
export function run(file: string, args: string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new LabCommandError(`${file} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** `ip ARGS`; a string is split at spaces (no argument here contains one). */
export const ip = (args: string[] | string) => run('ip', typeof args === 'string' ? args.split(' ') : args);
/** A command inside namespace `ns`. */
export const inNs = (ns: string, file: string, args: string[]) =>
  run('ip', ['netns', 'exec', ns, file, ...args]);

/** Why the lab cannot run here, or undefined when it can (root, iproute2 and iptables work). */
export async function labUnavailableReason(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'the network-namespace lab needs Linux';
  if (process.getuid?.() !== 0) return 'the network-namespace lab needs root (ip netns, iptables); skipped';
  const probe = `${LAB_PREFIX}-${process.pid}-probe`;
  try {
    await ip(['netns', 'add', probe]);
    await inNs(probe, 'iptables', ['-S']);
    return undefined;
  } catch (err) {
    return `the network-namespace lab cannot run here (${(err as Error).message}); skipped`;
  } finally {
    await ip(['netns', 'del', probe]).catch(() => undefined);
  }
}

/** The directory where a lab's unix sockets (its only channel to the namespaces) live. */
export function labSocketDir(pid: number): string {
  return join(tmpdir(), `${LAB_PREFIX}-${pid}`);
}

export async function listNamespaces(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean);
}

function killAll(pids: string): void {
  for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Kills every process inside `ns` (ours: only lab code starts processes there), then removes it.
 * The processes go first: a namespace whose name is removed lives on, unnamed, while they run.
 */
export async function destroyNamespace(ns: string): Promise<void> {
  killAll(await ip(['netns', 'pids', ns]).catch(() => ''));
  await ip(['netns', 'del', ns]).catch(() => undefined);
}

/** destroyNamespace for a process that is exiting (no event loop left). */
export function destroyNamespaceSync(ns: string): void {
  try {
    killAll(execFileSync('ip', ['netns', 'pids', ns], { timeout: 5_000, encoding: 'utf8' }));
    execFileSync('ip', ['netns', 'del', ns], { timeout: 5_000, stdio: 'ignore' });
  } catch {
    // the next run's sweeper removes it
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes what earlier lab runs left behind when they crashed or were killed: namespaces (and
 * the processes in them) whose test process no longer exists, and their socket directories.
 */
export async function sweepStaleLabs(): Promise<string[]> {
  const swept: string[] = [];
  for (const ns of await listNamespaces()) {
    const match = new RegExp(`^${LAB_PREFIX}-(\\d+)-`).exec(ns);
    if (!match) continue;
    const owner = Number(match[1]);
    if (alive(owner)) continue;
    await destroyNamespace(ns);
    await rm(labSocketDir(owner), { recursive: true, force: true });
    swept.push(ns);
  }
  return swept;
}
