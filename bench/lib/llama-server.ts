/**
 * llama.cpp's own `llama-server`, built from the source node-llama-cpp ships (see
 * scripts/build-llama-server.sh), started on a loopback port for comparisons and tests.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const SCRIPT = fileURLToPath(new URL('../../scripts/build-llama-server.sh', import.meta.url));

/** Where the build script caches the binary (same rule as the script). */
export function cachedLlamaServer(): string {
  const cache =
    process.env.MESH_LLM_LLAMA_CPP_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mesh-llm', 'llama.cpp');
  return join(cache, 'build', 'bin', 'llama-server');
}

/** The binary when it is built; with `build`, builds it first (about 10 minutes on 2 cores). */
export async function llamaServerBinary(options: { build: boolean }): Promise<string | undefined> {
  const cached = cachedLlamaServer();
  if (existsSync(cached)) return cached;
  if (!options.build) return undefined;
  const { stdout } = await promisify(execFile)(SCRIPT, { maxBuffer: 1 << 20, timeout: 3_600_000 });
  return stdout.trim().split('\n').at(-1);
}

export interface LlamaServer {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export async function startLlamaServer(options: {
  binary: string;
  model: string;
  threads: number;
  parallel: number;
  /** Tokens per slot; llama-server splits -c among its slots. */
  contextSize: number;
  alias?: string;
}): Promise<LlamaServer> {
  const port = await freePort();
  const args = [
    ['-m', options.model],
    ['--host', '127.0.0.1'],
    ['--port', String(port)],
    ['-t', String(options.threads)],
    ['-tb', String(options.threads)],
    ['-c', String(options.contextSize * options.parallel)],
    ['-np', String(options.parallel)],
    options.alias ? ['--alias', options.alias] : [],
  ].flat();
  const child = spawn(options.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`llama-server exited with ${code}:\n${stderr}`))),
  );
  exited.catch(() => {});
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await Promise.race([
      fetch(`${url}/health`)
        .then((r) => r.ok)
        .catch(() => false),
      exited,
    ]);
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`llama-server did not become healthy:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    },
  };
}
