import { coreLimitCalls, listDirectory, loadKoffi, readSmallFile, runStatusCommand } from './common.ts';
import type { PlatformCalls } from './types.ts';

type Libc = ReturnType<ReturnType<typeof loadKoffi>['load']>;
let libc: Libc | undefined;
let prctl: ((...a: number[]) => number) | undefined;

function loadLibc(): Libc {
  libc ??= loadKoffi().load('libc.so.6');
  return libc;
}

/** Linux calls through koffi into glibc. Functions are bound on first use only. */
export function linuxCalls(): PlatformCalls {
  return {
    ...coreLimitCalls(loadLibc),
    prctl(option: number, arg2: number) {
      prctl ??= loadLibc().func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)');
      return prctl(option, arg2, 0, 0, 0);
    },
    ptrace() {
      throw new Error('ptrace(PT_DENY_ATTACH) is macOS-only');
    },
    readFile: readSmallFile,
    listDir: listDirectory,
    runCommand: runStatusCommand,
  };
}
