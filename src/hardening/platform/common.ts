import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { type CommandResult, type PlatformCalls, RLIMIT_CORE, type RLimit } from './types.ts';

/** koffi is loaded synchronously and lazily: hardening is synchronous and must run first. */
export function loadKoffi(): typeof import('koffi') {
  const require = createRequire(import.meta.url);
  return require('koffi') as typeof import('koffi');
}

export function readSmallFile(path: string): Uint8Array | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

export function listDirectory(path: string): string[] | undefined {
  try {
    return readdirSync(path);
  } catch {
    return undefined;
  }
}

/** Fixed binaries only, no shell, short timeout: used for read-only status tools. */
export function runStatusCommand(file: string, args: string[]): CommandResult | undefined {
  try {
    const r = spawnSync(file, args, { encoding: 'utf8', timeout: 3000, stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.error) return undefined;
    return { status: r.status, stdout: `${r.stdout ?? ''}${r.stderr ?? ''}` };
  } catch {
    return undefined;
  }
}

type KoffiLib = ReturnType<typeof import('koffi').load>;

/** Bound once per process (koffi type names are global); one platform's libc per process. */
let rlimitCalls:
  | {
      setrlimit: (res: number, lim: { rlim_cur: bigint; rlim_max: bigint }) => number;
      getrlimit: (res: number, out: Record<string, unknown>) => number;
    }
  | undefined;

/**
 * setrlimit/getrlimit(RLIMIT_CORE) bound from `lib` on first use. The struct and calls are the
 * same on Linux (glibc) and macOS (libSystem); only the library differs.
 */
export function coreLimitCalls(
  loadLib: () => KoffiLib,
): Pick<PlatformCalls, 'setCoreLimit' | 'getCoreLimit'> {
  const bind = () => {
    if (rlimitCalls) return rlimitCalls;
    const lib = loadLib();
    loadKoffi().struct('mesh_llm_rlimit', { rlim_cur: 'uint64', rlim_max: 'uint64' });
    rlimitCalls = {
      setrlimit: lib.func('int setrlimit(int, const mesh_llm_rlimit *)'),
      getrlimit: lib.func('int getrlimit(int, _Out_ mesh_llm_rlimit *)'),
    };
    return rlimitCalls;
  };
  return {
    setCoreLimit(limit: RLimit) {
      return bind().setrlimit(RLIMIT_CORE, { rlim_cur: limit.soft, rlim_max: limit.hard });
    },
    getCoreLimit() {
      const out: Record<string, unknown> = {};
      if (bind().getrlimit(RLIMIT_CORE, out) !== 0) return undefined;
      return { soft: BigInt(out.rlim_cur as number | bigint), hard: BigInt(out.rlim_max as number | bigint) };
    },
  };
}
