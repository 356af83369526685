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

/** Names of the hardening actions applied at start (facts read from the platform are separate). */
export type HardeningStepName =
  | 'core-dumps-disabled'
  | 'debugger-blocked'
  | 'inspector-closed'
  | 'environment-clean';

/** One hardening action: achieved only when it was verified to have taken effect. */
export interface HardeningStep {
  name: HardeningStepName;
  achieved: boolean;
  /** Human-readable evidence or failure reason; never contains variable values. */
  detail: string;
}

/** Platform facts read once at start (and on explicit refresh), never per request. */
export interface PlatformFacts {
  sipEnabled: boolean;
  sipKnown: boolean;
  rdmaDisabled: boolean;
  rdmaKnown: boolean;
  secureBootEnabled: boolean;
  secureBootKnown: boolean;
  /** Linux Yama ptrace_scope "0".."3", or "unknown". */
  ptraceScope: string;
  /** Short evidence per fact (e.g. which file or command decided it). */
  details: Record<string, string>;
}

/** What applyHardening achieved (src/hardening/harden.ts). */
export interface HardeningReport {
  platform: string;
  /** False only for internal benchmark control runs (MESH_LLM_NO_HARDENING=1). */
  applied: boolean;
  steps: HardeningStep[];
  environment: {
    /** This process started without unsafe variables or Node flags. */
    clean: boolean;
    /** This process, or the parent that re-executed it, started with unsafe inputs. */
    startedWithUnsafeEnvironment: boolean;
    /** This process is the clean re-execution of such a parent. */
    reexecutedClean: boolean;
    /** Names (never values) of the unsafe variables / Node flags found. */
    unsafeNames: string[];
  };
  platformFacts: PlatformFacts;
  hardeningVersion: string;
}
