import { listDirectory, loadKoffi, readSmallFile, runStatusCommand } from './common.ts';
import { type PlatformCalls, RLIMIT_CORE, type RLimit } from './types.ts';

// Bound once per process: koffi type names are global.
let bound:
  | {
      ptrace: (req: number, pid: number, addr: null, data: number) => number;
      setrlimit: (res: number, lim: { rlim_cur: bigint; rlim_max: bigint }) => number;
      getrlimit: (res: number, out: Record<string, unknown>) => number;
    }
  | undefined;

/**
 * macOS calls through koffi into libSystem. Kept deliberately thin: all decisions live in
 * harden.ts / facts.ts so they are tested with injected calls on Linux.
 */
export function macosCalls(): PlatformCalls {
  const bind = () => {
    if (bound) return bound;
    const koffi = loadKoffi();
    const libSystem = koffi.load('/usr/lib/libSystem.B.dylib');
    koffi.struct('mesh_llm_rlimit', { rlim_cur: 'uint64', rlim_max: 'uint64' });
    bound = {
      ptrace: libSystem.func('int ptrace(int, int, void *, int)'),
      setrlimit: libSystem.func('int setrlimit(int, const mesh_llm_rlimit *)'),
      getrlimit: libSystem.func('int getrlimit(int, _Out_ mesh_llm_rlimit *)'),
    };
    return bound;
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
    prctl() {
      throw new Error('prctl is Linux-only');
    },
    ptrace(request: number, pid: number) {
      return bind().ptrace(request, pid, null, 0);
    },
    readFile: readSmallFile,
    listDir: listDirectory,
    runCommand: runStatusCommand,
  };
}
