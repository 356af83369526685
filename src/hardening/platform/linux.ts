import { listDirectory, loadKoffi, readSmallFile, runStatusCommand } from './common.ts';
import { type PlatformCalls, RLIMIT_CORE, type RLimit } from './types.ts';

// Bound once per process: koffi type names are global.
let bound:
  | {
      prctl: (...a: number[]) => number;
      setrlimit: (res: number, lim: { rlim_cur: bigint; rlim_max: bigint }) => number;
      getrlimit: (res: number, out: Record<string, unknown>) => number;
    }
  | undefined;

/** Linux calls through koffi into glibc. Functions are bound on first use only. */
export function linuxCalls(): PlatformCalls {
  const bind = () => {
    if (bound) return bound;
    const koffi = loadKoffi();
    const libc = koffi.load('libc.so.6');
    koffi.struct('mesh_llm_rlimit', { rlim_cur: 'uint64', rlim_max: 'uint64' });
    bound = {
      prctl: libc.func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)'),
      setrlimit: libc.func('int setrlimit(int, const mesh_llm_rlimit *)'),
      getrlimit: libc.func('int getrlimit(int, _Out_ mesh_llm_rlimit *)'),
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
    prctl(option: number, arg2: number) {
      return bind().prctl(option, arg2, 0, 0, 0);
    },
    ptrace() {
      throw new Error('ptrace(PT_DENY_ATTACH) is macOS-only');
    },
    readFile: readSmallFile,
    listDir: listDirectory,
    runCommand: runStatusCommand,
  };
}
