/** Where prompt plaintext is processed on a host ('none' for a client without a backend). */
export type PlaintextBoundaryFact = 'in-process' | 'external-backend' | 'none';

/**
 * The measured security posture of this process (SPEC §7). Every boolean is true only
 * when the step was verified to have taken effect; unknown facts are false/'unknown'.
 * Mirrors proto SecurityPosture (field 37) in camelCase.
 */
export interface SecurityPostureFacts {
  platform: string;
  sipEnabled: boolean;
  sipKnown: boolean;
  rdmaDisabled: boolean;
  rdmaKnown: boolean;
  secureBootEnabled: boolean;
  debuggerBlocked: boolean;
  coreDumpsDisabled: boolean;
  inspectorClosed: boolean;
  environmentClean: boolean;
  startedWithUnsafeEnvironment: boolean;
  reexecutedClean: boolean;
  /** Names (never values) of code-loading variables found at start. */
  unsafeEnvironment: string[];
  /** Linux Yama ptrace_scope "0".."3", or "unknown". */
  ptraceScope: string;
  /** Lower-case hex SHA-256 over the measured code (node executable, bundle, native addons). */
  binaryHash: string;
  plaintextBoundary: PlaintextBoundaryFact;
  hardeningVersion: string;
}
