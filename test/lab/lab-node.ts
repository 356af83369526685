/**
 * A real `mesh-llm serve` process inside a lab namespace, with its agent (unix-socket access to
 * the API and console, and an optional fake OpenAI backend in the same namespace).
 *
 * Processes start in their own process group (`detached`), so a kill reaches the node and any
 * process it re-executed as; whatever survives is killed with its namespace by `Lab.destroy()`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { BIN, NODE_FLAGS } from '../../bench/lib/node-process.ts';
import { readConsoleCredential } from '../../src/node/console-credential.ts';
import { agentSocket, LAB_API_PORT, LAB_CONSOLE_PORT } from './agent.ts';
import { inNs } from './netns.ts';
import type { Lab, LabRole } from './topology.ts';

const AGENT = new URL('./agent.ts', import.meta.url).pathname;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_TAIL_CHARS = 16_000;

export interface LabResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** Resolves with the whole body (rejects if the connection breaks first). */
  text(): Promise<string>;
  json<T = unknown>(): Promise<T>;
  /** The body as it arrives. */
  chunks(): AsyncIterable<Buffer>;
}

export interface RequestInit {
  method?: string;
  body?: unknown;
  /** Abort (and reject) after this long. Default 30 s. */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

/** HTTP over a unix socket (the agent forwards it to the node inside its namespace). */
export function unixRequest(socketPath: string, path: string, init: RequestInit = {}): Promise<LabResponse> {
  const body = init.body === undefined ? undefined : Buffer.from(JSON.stringify(init.body));
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        socketPath,
        path,
        method: init.method ?? (body ? 'POST' : 'GET'),
        headers: {
          ...init.headers,
          ...(body ? { 'content-type': 'application/json', 'content-length': body.length } : {}),
        },
        signal: AbortSignal.timeout(init.timeoutMs ?? 30_000),
        agent: false,
      },
      (res) => {
        const chunks = async function* () {
          for await (const chunk of res) yield chunk as Buffer;
          if (!res.complete) throw new Error('the response ended before its end');
        };
        const text = async () => {
          const parts: Buffer[] = [];
          for await (const chunk of chunks()) parts.push(chunk);
          return Buffer.concat(parts).toString('utf8');
        };
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          chunks,
          text,
          json: async () => JSON.parse(await text()),
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export interface LabNodeOptions {
  /** Serve this model from a fake OpenAI backend in the node's namespace. */
  model?: string;
  /** Delay between the fake backend's streamed tokens (a long answer to cut mid-stream). */
  tokenDelayMs?: number;
  /** The node's name and data dir (default: the role); a new name is a fresh node in the same namespace. */
  name?: string;
}

export interface Spawned {
  child: ChildProcess;
  output: { text: string };
  exited: Promise<void>;
}

/**
 * Runs `node ARGS` inside `ns`, keeping the tail of its output; with MESH_LAB_LOG_DIR set, the
 * whole output is also appended to DIR/<log>.log (for debugging a scenario).
 */
export function spawnInNs(ns: string, args: string[], env: NodeJS.ProcessEnv, log?: string): Spawned {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    env,
  });
  const output = { text: '' };
  const logDir = process.env.MESH_LAB_LOG_DIR;
  const file = logDir && log ? join(logDir, `${log}.log`) : undefined;
  const keep = (d: Buffer) => {
    output.text = (output.text + d).slice(-LOG_TAIL_CHARS);
    if (file) appendFileSync(file, d);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, output, exited };
}

export function waitForLine(spawned: Spawned, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(spawned.output.text);
      if (!match) return;
      done();
      resolve(match);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${what} did not start within ${START_TIMEOUT_MS} ms:\n${spawned.output.text}`));
    }, START_TIMEOUT_MS);
    const onExit = () => {
      done();
      reject(new Error(`${what} exited before it was ready:\n${spawned.output.text}`));
    };
    const done = () => {
      clearTimeout(timer);
      spawned.child.stdout!.off('data', check);
      spawned.child.off('exit', onExit);
    };
    spawned.child.stdout!.on('data', check);
    spawned.child.once('exit', onExit);
    check();
  });
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

/** A minimal environment: no NODE_OPTIONS or test-runner variables reach the node. */
// MESH_LAB_LOG_LEVEL sets the nodes' log level (default info); MESH_LAB_DEBUG is passed on as
// DEBUG (libp2p's own logs, e.g. `libp2p:connection-monitor*`).
export function nodeEnv(): NodeJS.ProcessEnv {
  const level = process.env.MESH_LAB_LOG_LEVEL ?? 'info';
  const debug = process.env.MESH_LAB_DEBUG ? { DEBUG: process.env.MESH_LAB_DEBUG } : {};
  return { PATH: process.env.PATH, HOME: process.env.HOME, MESH_LLM_LOG_LEVEL: level, ...debug };
}

export class LabNode {
  readonly role: LabRole;
  readonly name: string;
  readonly ns: string;
  readonly dataDir: string;
  readonly backendUrl: string | undefined;
  #args: string[];
  #agent: Spawned;
  #node: Spawned | undefined;
  readonly #apiSocket: string;
  readonly #consoleSocket: string;

  private constructor(lab: Lab, role: LabRole, name: string, agent: Spawned, backendUrl: string | undefined) {
    this.role = role;
    this.name = name;
    this.ns = lab.ns(role);
    this.dataDir = join(lab.socketDir, name);
    this.#agent = agent;
    this.backendUrl = backendUrl;
    this.#args = [];
    this.#apiSocket = agentSocket(lab.socketDir, role, 'api');
    this.#consoleSocket = agentSocket(lab.socketDir, role, 'console');
  }

  /** Starts the namespace's agent (and fake backend), then `mesh-llm serve ARGS`. */
  static async start(
    lab: Lab,
    role: LabRole,
    args: string[],
    options: LabNodeOptions = {},
  ): Promise<LabNode> {
    const agentArgs = [AGENT, lab.socketDir, role];
    if (options.model) agentArgs.push(options.model, String(options.tokenDelayMs ?? 0));
    const agent = spawnInNs(lab.ns(role), agentArgs, nodeEnv());
    try {
      await waitForLine(agent, /^ready$/m, `the lab agent in ${role}`);
    } catch (err) {
      killGroup(agent.child, 'SIGKILL');
      throw err;
    }
    const backendUrl = /^backend (\S+)$/m.exec(agent.output.text)?.[1];
    const node = new LabNode(lab, role, options.name ?? role, agent, backendUrl);
    const backend =
      options.model && backendUrl ? ['--backend', backendUrl, '--backend-model', options.model] : [];
    await node.startNode([...backend, ...args]);
    return node;
  }

  /** (Re)starts `mesh-llm serve` with `args` (by default those of its last start), keeping its data dir. */
  async startNode(args: string[] = this.#args): Promise<void> {
    if (this.running) throw new Error(`${this.role} is already running`);
    this.#args = args;
    const fixed = [
      ...NODE_FLAGS,
      BIN,
      'serve',
      '--name',
      this.name,
      '--data-dir',
      this.dataDir,
      '--port',
      String(LAB_API_PORT),
      '--console',
      String(LAB_CONSOLE_PORT),
      '--attestation-key',
      'software',
      '--log-format',
      'json',
    ];
    const spawned = spawnInNs(this.ns, [...fixed, ...args], nodeEnv(), this.name);
    this.#node = spawned;
    await waitForLine(spawned, /OpenAI API: \S+\/v1/, `mesh-llm in ${this.role}`);
  }

  get running(): boolean {
    const child = this.#node?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** The node's recent output (logs), for failure messages. */
  get output(): string {
    return this.#node?.output.text ?? '';
  }

  api(path: string, init?: RequestInit): Promise<LabResponse> {
    return unixRequest(this.#apiSocket, path, init);
  }

  console(path: string, init?: RequestInit): Promise<LabResponse> {
    return unixRequest(this.#consoleSocket, path, init);
  }

  /** GET /api/status as the node's own user (its console credential unlocks the invite token). */
  async status(): Promise<LabStatus> {
    const credential = await readConsoleCredential(this.dataDir);
    const res = await this.console('/api/status', {
      timeoutMs: 10_000,
      headers: { authorization: `Bearer ${credential}` },
    });
    const body = await res.json<LabStatus & { error?: { message: string } }>();
    if (res.status !== 200) throw new Error(`${this.role} /api/status ${res.status}: ${body.error?.message}`);
    return body;
  }

  /** `mesh-llm invite` run in the node's namespace, as its operator would: the token, or the CLI's error. */
  async token(): Promise<string> {
    const args = [
      ...NODE_FLAGS,
      BIN,
      'invite',
      '--console',
      String(LAB_CONSOLE_PORT),
      '--data-dir',
      this.dataDir,
    ];
    try {
      return (await inNs(this.ns, process.execPath, args)).trim();
    } catch (err) {
      throw new Error(`mesh-llm invite on ${this.name} failed: ${(err as Error).message.split(': ').at(-1)}`);
    }
  }

  async models(): Promise<string[]> {
    const res = await this.api('/v1/models', { timeoutMs: 10_000 });
    return (await res.json<{ data: { id: string }[] }>()).data.map((m) => m.id);
  }

  /** Kills the node (not its agent or backend): SIGKILL is a crash, SIGTERM a clean leave. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const node = this.#node;
    if (!node || !this.running) return;
    killGroup(node.child, signal);
    const timer = setTimeout(() => killGroup(node.child, 'SIGKILL'), STOP_TIMEOUT_MS);
    await node.exited;
    clearTimeout(timer);
  }

  /** Stops the node and its agent. */
  async close(): Promise<void> {
    await this.kill('SIGTERM');
    this.#agent.child.stdin!.end();
    killGroup(this.#agent.child, 'SIGKILL');
    await this.#agent.exited;
  }
}

export interface LabPeerStatus {
  id: string;
  name: string;
  models: string[];
  connected: boolean;
  [field: string]: unknown;
}

export interface LabStatus {
  node: { id: string; name: string; token: string | null; addresses: string[]; meshId: string };
  peers: LabPeerStatus[];
}

/** Polls `check` every 100 ms until it returns a value; fails after `timeoutMs` saying `what`. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined | false> | T | undefined | false,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError ? ` (last error: ${(lastError as Error).message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface ChatResult {
  status: number;
  /** x-mesh-path: direct, relay or local. */
  path: string | undefined;
  ms: number;
  /** The OpenAI error code when the request failed. */
  errorCode: string | undefined;
  errorMessage: string | undefined;
}

/** One non-streamed chat completion through `node`, timed. */
export async function chat(node: LabNode, model: string, timeoutMs = 30_000): Promise<ChatResult> {
  const start = performance.now();
  let res: LabResponse;
  let body: { error?: { code?: string; message?: string } };
  try {
    res = await node.api('/v1/chat/completions', {
      body: { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
      timeoutMs,
    });
    body = await res.json();
  } catch (err) {
    if (performance.now() - start < timeoutMs) throw err;
    throw new Error(`${node.name} gave no answer for ${model} within ${timeoutMs} ms`);
  }
  return {
    status: res.status,
    path: res.headers['x-mesh-path'] as string | undefined,
    ms: performance.now() - start,
    errorCode: body.error?.code,
    errorMessage: body.error?.message,
  };
}
