/**
 * The fake OpenAI backend as a process of its own, as every real backend (llama-server, Ollama,
 * vLLM) is. In the benchmark's own process, "direct to backend" would be a call within one event
 * loop, cheaper than any real client's, and the load generator would share its CPU time with
 * the backend's.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpuMsOf } from './node-process.ts';

const ENTRY = fileURLToPath(new URL('./fake-backend-server.ts', import.meta.url));

export interface FakeBackendProcess {
  url: string;
  /** CPU time (user + system) the backend process has used so far, in ms. */
  cpuMs(): Promise<number>;
  close(): Promise<void>;
}

export async function startFakeBackendProcess(options: {
  tokens: number;
  model: string;
  /** Pace: ms between streamed tokens, and answers generated at once (more wait). */
  tokenDelayMs?: number;
  slots?: number;
}): Promise<FakeBackendProcess> {
  const pacing =
    options.tokenDelayMs === undefined
      ? []
      : [String(options.tokenDelayMs), String(options.slots ?? 1_000_000)];
  const child = spawn(process.execPath, [ENTRY, String(options.tokens), options.model, ...pacing], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n', 2);
      if (line.length === 2) resolve(line[0]!);
    });
    child.once('exit', (code) =>
      reject(new Error(`the fake backend exited with ${code} before it was ready`)),
    );
  });
  return {
    url,
    cpuMs: () => cpuMsOf(child.pid!),
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin.end();
      }),
  };
}
