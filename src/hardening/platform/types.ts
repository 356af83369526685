/**
 * The thin set of OS calls hardening needs. Injectable so the decision logic can be unit
 * tested (including the macOS path on Linux) and every failure mode can be forced.
 * Any call may throw (e.g. the FFI library cannot load); callers treat a throw as "not achieved".
 */
export interface RLimit {
  soft: bigint;
  hard: bigint;
}

export interface CommandResult {
  status: number | null;
  stdout: string;
}

export interface PlatformCalls {
  /** setrlimit(RLIMIT_CORE, {soft, hard}); returns the C return value (0 = success). */
  setCoreLimit(limit: RLimit): number;
  /** getrlimit(RLIMIT_CORE); undefined when the call failed. */
  getCoreLimit(): RLimit | undefined;
  /** Linux prctl(option, arg2, 0, 0, 0); returns the C return value. */
  prctl(option: number, arg2: number): number;
  /** macOS ptrace(request, pid, 0, 0); returns the C return value. */
  ptrace(request: number, pid: number): number;
  /** Reads a whole (small) file; undefined when it does not exist or cannot be read. */
  readFile(path: string): Uint8Array | undefined;
  /** Lists a directory's entries; undefined when it does not exist or cannot be read. */
  listDir(path: string): string[] | undefined;
  /** Runs a command with a short timeout; undefined when it cannot be started. */
  runCommand(file: string, args: string[]): CommandResult | undefined;
}

export const RLIMIT_CORE = 4; // same value on Linux and macOS
export const PR_GET_DUMPABLE = 3;
export const PR_SET_DUMPABLE = 4;
export const PT_DENY_ATTACH = 31;
