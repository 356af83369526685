import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface SwtpmHandle {
  /** Value for TPM2TOOLS_TCTI, e.g. `swtpm:host=127.0.0.1,port=N`. */
  tcti: string;
  /** Kills swtpm and removes its state directory. Idempotent. */
  stop(): Promise<void>;
  /** Stops the emulator but keeps its state so a new one can resume it (simulates a reboot). */
  restart(): Promise<void>;
}

/** Throws a clear error when the TPM tooling the tests need is missing. */
export function requireSwtpmTools(): void {
  for (const tool of ['swtpm', 'tpm2_createprimary', 'tpm2_sign']) {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
    } catch {
      throw new Error(
        `'${tool}' is not installed: TPM tests need swtpm and tpm2-tools (apt-get install swtpm swtpm-tools tpm2-tools)`,
      );
    }
  }
}

/**
 * Starts a software TPM 2.0 on 127.0.0.1 (server port N, control port N+1, as the swtpm TCTI
 * expects) with a fresh temp state dir, already started up (no tpm2_startup needed).
 */
export async function startSwtpm(): Promise<SwtpmHandle> {
  requireSwtpmTools();
  const stateDir = await mkdtemp(join(tmpdir(), 'mesh-llm-swtpm-'));
  let child: ChildProcess | undefined;
  let port = 0;

  const launch = async (): Promise<void> => {
    for (let attempt = 0; attempt < 8; attempt++) {
      port = await freePortPair();
      const proc = spawn(
        'swtpm',
        [
          'socket',
          '--tpm2',
          '--tpmstate',
          `dir=${stateDir}`,
          '--server',
          `type=tcp,port=${port},bindaddr=127.0.0.1`,
          '--ctrl',
          `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
          '--flags',
          'not-need-init,startup-clear',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let exited = false;
      proc.once('exit', () => {
        exited = true;
      });
      proc.stderr?.resume();
      for (let i = 0; i < 100 && !exited; i++) {
        if (await canConnect(port)) {
          child = proc;
          return;
        }
        await sleep(20);
      }
      proc.kill('SIGKILL');
    }
    throw new Error('swtpm did not start (ports busy?)');
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };

  try {
    await launch();
  } catch (error) {
    await rm(stateDir, { recursive: true, force: true });
    throw error;
  }
  const handle: SwtpmHandle = {
    get tcti() {
      return `swtpm:host=127.0.0.1,port=${port}`;
    },
    async stop() {
      await kill();
      await rm(stateDir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      await launch();
    },
  };
  return handle;
}

/** A port N where N and N+1 are both free on 127.0.0.1 right now. */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listenProbe(0);
    if (port < 65535 && (await listenProbe(port + 1).catch(() => 0)) !== 0) return port;
  }
  throw new Error('no free port pair found');
}

function listenProbe(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const chosen = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(chosen));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
