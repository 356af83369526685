import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const FIXTURE = fileURLToPath(new URL('./fixtures/hardened-entry.ts', import.meta.url));
export const PROBE = fileURLToPath(new URL('./fixtures/probe.cjs', import.meta.url));
export const PTRACE_HELPER = fileURLToPath(new URL('./fixtures/ptrace-attach.ts', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/mesh-llm.js', import.meta.url));

/** The environment of the test process minus anything that would itself trigger a re-exec. */
export function baseEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(LD_|DYLD_|NODE_OPTIONS|NODE_PATH|NODE_TEST|MESH_LLM_)/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** A child with line-oriented stdout; every wait is bounded. */
export class Child {
  readonly proc: ChildProcess;
  stdout = '';
  stderr = '';
  private lines: string[] = [];
  private waiters: (() => void)[] = [];
  /** Set on 'close' (not 'exit'): stdout may still deliver data after the process exited. */
  private closed = false;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    file: string,
    args: string[],
    options: { env?: NodeJS.ProcessEnv; execArgv?: string[]; uid?: number; gid?: number; cwd?: string } = {},
  ) {
    this.proc = spawn(process.execPath, [...(options.execArgv ?? []), file, ...args], {
      env: options.env ?? baseEnv(),
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      uid: options.uid,
      gid: options.gid,
    });
    this.exited = once(this.proc, 'exit').then(([code, signal]) => ({ code, signal }));
    let buf = '';
    this.proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      buf += d;
      let i = buf.indexOf('\n');
      while (i !== -1) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.once('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Next JSON line on stdout (within timeoutMs). */
  async json<T = Record<string, unknown>>(timeoutMs = 20_000): Promise<T> {
    const line = await this.waitFor(() => this.lines.shift(), timeoutMs, 'a JSON line');
    return JSON.parse(line) as T;
  }

  async waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      if (this.closed) {
        const again = check();
        if (again !== undefined) return again;
        throw new Error(`child exited before ${what}; stderr: ${this.stderr.slice(0, 500)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; stderr: ${this.stderr.slice(0, 500)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  /** SIGTERM first (a re-executing parent forwards it to its child), SIGKILL if still alive. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
