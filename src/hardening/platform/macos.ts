import { coreLimitCalls, listDirectory, loadKoffi, readSmallFile, runStatusCommand } from './common.ts';
import type { PlatformCalls } from './types.ts';

type LibSystem = ReturnType<ReturnType<typeof loadKoffi>['load']>;
let libSystem: LibSystem | undefined;
let ptrace: ((req: number, pid: number, addr: null, data: number) => number) | undefined;

function loadLibSystem(): LibSystem {
  libSystem ??= loadKoffi().load('/usr/lib/libSystem.B.dylib');
  return libSystem;
}

/**
 * macOS calls through koffi into libSystem. Kept deliberately thin: all decisions live in
 * harden.ts / facts.ts so they are tested with injected calls on Linux.
 */
export function macosCalls(): PlatformCalls {
  return {
    ...coreLimitCalls(loadLibSystem),
    prctl() {
      throw new Error('prctl is Linux-only');
    },
    ptrace(request: number, pid: number) {
      ptrace ??= loadLibSystem().func('int ptrace(int, int, void *, int)');
      return ptrace(request, pid, null, 0);
    },
    readFile: readSmallFile,
    listDir: listDirectory,
    runCommand: runStatusCommand,
  };
}
