import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readConsoleCredential } from '../../src/node/console-credential.ts';

export const BIN = fileURLToPath(new URL('../../bin/mesh-llm.js', import.meta.url));
/** The Node flags of the bin's shebang, so a spawned node runs exactly as `mesh-llm` would. */
export const NODE_FLAGS = (readFileSync(BIN, 'utf8').split('\n', 1)[0] ?? '')
  .split(/\s+/)
  .filter((a) => a.startsWith('--'));

export interface NodeProcess {
  child: ChildProcess;
  apiUrl: string;
  consoleUrl: string;
  token(): Promise<string>;
  endpointId(): Promise<string>;
  /** GET /api/status, whole. */
  status(): Promise<Record<string, unknown>>;
  /** Peak resident set size so far (VmHWM), in MB. */
  peakRssMb(): Promise<number>;
  /** CPU time (user + system) used so far by the node and the process it re-executed as, in ms. */
  cpuMs(): Promise<number>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Runs `mesh-llm serve` as a real separate process (own memory, own event loop), on loopback
 * only, with a fresh data dir that is removed when it stops.
 */
export async function spawnNode(args: string[], env: NodeJS.ProcessEnv = {}): Promise<NodeProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mesh-llm-node-'));
  const fixed = ['serve', '--port', '0', '--console', '0', '--bind-host', '127.0.0.1', '--data-dir', dataDir];
  const child = spawn(process.execPath, [...NODE_FLAGS, BIN, ...fixed, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MESH_LLM_LOG_LEVEL: 'warn', ...env },
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const urls = await new Promise<{ api: string; console: string }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`node did not start in time:\n${stderr}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const match = /OpenAI API: (\S+)\/v1\s+console: (\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({ api: match[1]!, console: match[2]! });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before it was ready:\n${stderr}`));
    });
  });
  const credential = await readConsoleCredential(dataDir);
  const status = async () =>
    (await (
      await fetch(`${urls.console}/api/status`, { headers: { authorization: `Bearer ${credential}` } })
    ).json()) as { node: { token: string; id: string } } & Record<string, unknown>;
  return {
    child,
    apiUrl: urls.api,
    consoleUrl: urls.console,
    token: async () => (await status()).node.token,
    endpointId: async () => (await status()).node.id,
    status,
    async peakRssMb() {
      const text = await readFile(`/proc/${child.pid}/status`, 'utf8');
      const kb = Number(/VmHWM:\s+(\d+)/.exec(text)?.[1] ?? 0);
      return kb / 1024;
    },
    async cpuMs() {
      const pids = [child.pid!, ...(await childPids(child.pid!))];
      const times = await Promise.all(pids.map(cpuMsOf));
      return times.reduce((a, b) => a + b, 0);
    },
    async stop(signal = 'SIGTERM') {
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill(signal);
      });
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Direct children of `pid` (a node that re-executes itself with a clean environment has one). */
async function childPids(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text.split(/\s+/).filter(Boolean).map(Number);
}

/** utime + stime of a process from /proc/PID/stat, in ms (0 once it is gone). */
export async function cpuMsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  return Number.isFinite(ticks) ? (ticks * 1000) / CLOCK_TICKS_PER_SECOND : 0;
}

/** USER_HZ: 100 on Linux for every architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Resolves once the node at `apiUrl` lists `model` in /v1/models (gossip has reached it). */
export async function waitForModel(apiUrl: string, model: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const list = (await (await fetch(`${apiUrl}/v1/models`)).json()) as { data: { id: string }[] };
    if (list.data.some((m) => m.id === model)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${apiUrl} never saw the model`);
}

/** CPU ms used so far by `processes` (nodes, the fake backend) and by this one (the load generator). */
export async function machineCpuMs(processes: { cpuMs(): Promise<number> }[]): Promise<number> {
  const own = process.cpuUsage();
  const nodesMs = await Promise.all(processes.map((p) => p.cpuMs()));
  return (own.user + own.system) / 1000 + nodesMs.reduce((a, b) => a + b, 0);
}
