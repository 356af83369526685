/**
 * The lab's helper inside one namespace (run with `ip netns exec`; not for use on its own):
 *
 *   node test/lab/agent.ts SOCKET_DIR ROLE [MODEL TOKEN_DELAY_MS]
 *
 * - forwards the unix sockets SOCKET_DIR/ROLE-api.sock and ROLE-console.sock to the node's API
 *   (127.0.0.1:9337) and console (127.0.0.1:3131) inside the namespace: a filesystem socket is
 *   the test's only way in, since the namespace has no network link to the outside;
 * - with MODEL, serves the fake OpenAI backend on 127.0.0.1 for the node's `--backend`
 *   (prints `backend URL`);
 * - prints `ready`, and exits when its stdin closes (the test process ended or died).
 */
import { rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { startFakeOpenAi } from '../helpers/fake-openai-server.ts';

export const LAB_API_PORT = 9337;
export const LAB_CONSOLE_PORT = 3131;

export function agentSocket(socketDir: string, role: string, which: 'api' | 'console'): string {
  return join(socketDir, `${role}-${which}.sock`);
}

function forward(path: string, port: number): Promise<void> {
  rmSync(path, { force: true });
  const server = createServer((socket) => {
    // Each connection dials the node afresh, so a restarted node is reachable through the same socket.
    const upstream = connect(port, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    const close = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on('error', close);
    upstream.on('error', close);
    socket.on('close', close);
    upstream.on('close', close);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
}

async function main(): Promise<void> {
  const [socketDir, role, model, delay] = process.argv.slice(2);
  if (socketDir === undefined || role === undefined)
    throw new Error('usage: agent.ts SOCKET_DIR ROLE [MODEL DELAY]');
  await forward(agentSocket(socketDir, role, 'api'), LAB_API_PORT);
  await forward(agentSocket(socketDir, role, 'console'), LAB_CONSOLE_PORT);
  if (model !== undefined) {
    const backend = await startFakeOpenAi({ model, tokens: 64, tokenDelayMs: Number(delay ?? 0) });
    process.stdout.write(`backend ${backend.url}\n`);
  }
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

if (import.meta.main) await main();
