import {
  decodeNames,
  inspectEnvironment,
  isUnsafeEnvName,
  NO_HARDENING_VAR,
  REEXEC_MARKER,
  REEXEC_PARENT_UNSAFE,
} from './env.ts';
import { readPlatformFacts } from './facts.ts';
import { type InspectorControl, nodeInspector } from './inspector.ts';
import { linuxCalls } from './platform/linux.ts';
import { macosCalls } from './platform/macos.ts';
import { type PlatformCalls, PR_GET_DUMPABLE, PR_SET_DUMPABLE, PT_DENY_ATTACH } from './platform/types.ts';
import type { HardeningReport, HardeningStep } from './types.ts';
import { HARDENING_VERSION } from './version.ts';

export interface ApplyHardeningOptions {
  platform?: NodeJS.Platform;
  /** Injected OS calls (tests); defaults to koffi-backed calls for the platform. */
  syscalls?: PlatformCalls;
  /** Scrubbed in place of unsafe variables and re-exec markers. Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  execArgv?: readonly string[];
  inspector?: InspectorControl;
}

function defaultCalls(platform: NodeJS.Platform): PlatformCalls {
  if (platform === 'linux') return linuxCalls();
  if (platform === 'darwin') return macosCalls();
  const unsupported = (): never => {
    throw new Error(`no hardening calls on ${platform}`);
  };
  return {
    setCoreLimit: unsupported,
    getCoreLimit: unsupported,
    prctl: unsupported,
    ptrace: unsupported,
    readFile: () => undefined,
    listDir: () => undefined,
    runCommand: () => undefined,
  };
}

function attempt(
  name: HardeningStep['name'],
  fn: () => { achieved: boolean; detail: string },
): HardeningStep {
  try {
    return { name, ...fn() };
  } catch (err) {
    return { name, achieved: false, detail: `failed: ${(err as Error).message}` };
  }
}

function disableCoreDumps(calls: PlatformCalls): { achieved: boolean; detail: string } {
  const rc = calls.setCoreLimit({ soft: 0n, hard: 0n });
  const after = calls.getCoreLimit();
  if (!after) return { achieved: false, detail: `setrlimit returned ${rc}; getrlimit failed` };
  const achieved = after.soft === 0n && after.hard === 0n;
  return {
    achieved,
    detail: achieved
      ? 'RLIMIT_CORE reads back 0/0'
      : `setrlimit returned ${rc}; RLIMIT_CORE reads back ${after.soft}/${after.hard}`,
  };
}

function blockDebugger(
  platform: NodeJS.Platform,
  calls: PlatformCalls,
): { achieved: boolean; detail: string } {
  if (platform === 'linux') {
    const rc = calls.prctl(PR_SET_DUMPABLE, 0);
    const dumpable = calls.prctl(PR_GET_DUMPABLE, 0);
    return dumpable === 0
      ? {
          achieved: true,
          detail: 'PR_GET_DUMPABLE reads back 0 (no same-user ptrace attach, no /proc/PID/mem)',
        }
      : {
          achieved: false,
          detail: `prctl(PR_SET_DUMPABLE) returned ${rc}; PR_GET_DUMPABLE reads ${dumpable}`,
        };
  }
  if (platform === 'darwin') {
    const rc = calls.ptrace(PT_DENY_ATTACH, 0);
    // macOS offers no read-back of P_LNOATTACH; a 0 return is the kernel's acceptance.
    return rc === 0
      ? { achieved: true, detail: 'ptrace(PT_DENY_ATTACH) returned 0' }
      : { achieved: false, detail: `ptrace(PT_DENY_ATTACH) returned ${rc}` };
  }
  return { achieved: false, detail: `no debugger blocking on ${platform}` };
}

function closeInspector(
  inspector: InspectorControl,
  execArgv: readonly string[],
  startedWithInspectFlag: boolean,
): { achieved: boolean; detail: string } {
  if (inspector.url() !== undefined) inspector.close();
  const closed = inspector.url() === undefined;
  const guarded = inspector.guardOpen();
  const sigusr1 = inspector.blockSigusr1(execArgv);
  const problems: string[] = [];
  if (!closed) problems.push('inspector still listening');
  if (!guarded) problems.push('inspector.open could not be guarded');
  if (!sigusr1) problems.push('SIGUSR1 could not be blocked');
  // Closing now does not undo an attach that may already have happened.
  if (startedWithInspectFlag) problems.push('process started with an --inspect flag');
  if (problems.length > 0) return { achieved: false, detail: problems.join('; ') };
  return { achieved: true, detail: `inspector closed, inspector.open refused, ${sigusr1}` };
}

/**
 * Applies runtime hardening to this process (SPEC §7) and reports, per step, what was
 * verified to have taken effect. Must run before the backend loads and before libp2p starts.
 * Never throws: a failed step is reported as not achieved.
 */
export function applyHardening(options: ApplyHardeningOptions = {}): HardeningReport {
  const platform = options.platform ?? process.platform;
  const env = options.env ?? process.env;
  const execArgv = options.execArgv ?? process.execArgv;

  const findings = inspectEnvironment(env, execArgv);
  const reexecuted = env[REEXEC_MARKER] === '1';
  const parentUnsafe = reexecuted ? decodeNames(env[REEXEC_PARENT_UNSAFE]) : [];
  const unsafeNames = [...new Set([...findings.unsafe, ...parentUnsafe])].sort();
  const environment = {
    clean: findings.clean,
    startedWithUnsafeEnvironment: !findings.clean || parentUnsafe.length > 0,
    // Only a child that is itself clean counts, whatever the marker claims.
    reexecutedClean: reexecuted && findings.clean && parentUnsafe.length > 0,
    unsafeNames,
  };
  // Scrub, so nothing this process spawns inherits them (this cannot undo a preload).
  for (const name of Object.keys(env)) {
    if (isUnsafeEnvName(name) || name === REEXEC_MARKER || name === REEXEC_PARENT_UNSAFE) delete env[name];
  }

  let calls: PlatformCalls | undefined = options.syscalls;
  const getCalls = () => {
    calls ??= defaultCalls(platform);
    return calls;
  };

  if (env[NO_HARDENING_VAR] === '1') {
    const skipped = 'skipped (MESH_LLM_NO_HARDENING=1)';
    return {
      platform,
      applied: false,
      steps: skippedSteps(skipped, environment),
      environment,
      platformFacts: readPlatformFacts(platform, safeCalls(getCalls)),
      hardeningVersion: HARDENING_VERSION,
    };
  }

  const startedWithInspectFlag = findings.unsafeExecArgv.some(
    (f) => f.startsWith('--inspect') || f === '--debug-port',
  );
  const steps: HardeningStep[] = [
    attempt('core-dumps-disabled', () => disableCoreDumps(getCalls())),
    attempt('debugger-blocked', () => blockDebugger(platform, getCalls())),
    attempt('inspector-closed', () =>
      closeInspector(options.inspector ?? nodeInspector(), execArgv, startedWithInspectFlag),
    ),
    environmentStep(environment),
  ];
  return {
    platform,
    applied: true,
    steps,
    environment,
    platformFacts: readPlatformFacts(platform, safeCalls(getCalls)),
    hardeningVersion: HARDENING_VERSION,
  };
}

function skippedSteps(reason: string, environment: HardeningReport['environment']): HardeningStep[] {
  const names = ['core-dumps-disabled', 'debugger-blocked', 'inspector-closed'] as const;
  return [
    ...names.map((name): HardeningStep => ({ name, achieved: false, detail: reason })),
    environmentStep(environment),
  ];
}

function environmentStep(environment: HardeningReport['environment']): HardeningStep {
  if (environment.clean && environment.reexecutedClean) {
    return {
      name: 'environment-clean',
      achieved: true,
      detail: `re-executed without ${environment.unsafeNames.join(', ')}`,
    };
  }
  if (environment.clean) {
    return {
      name: 'environment-clean',
      achieved: true,
      detail: 'no code-loading variables or Node flags at start',
    };
  }
  return {
    name: 'environment-clean',
    achieved: false,
    detail: `started with ${environment.unsafeNames.join(', ')} (scrubbed now; a preload cannot be undone)`,
  };
}

/** Platform facts must not fail hardening: a calls factory that throws yields unknown facts. */
function safeCalls(get: () => PlatformCalls): PlatformCalls {
  try {
    return get();
  } catch {
    return {
      setCoreLimit: () => -1,
      getCoreLimit: () => undefined,
      prctl: () => -1,
      ptrace: () => -1,
      readFile: () => undefined,
      listDir: () => undefined,
      runCommand: () => undefined,
    };
  }
}

/**
 * A report for a process that was not hardened (e.g. the CLI called in-process by a test):
 * every step false, environment inspected without scrubbing.
 */
export function notHardenedReport(reason: string, options: ApplyHardeningOptions = {}): HardeningReport {
  const platform = options.platform ?? process.platform;
  const findings = inspectEnvironment(options.env ?? process.env, options.execArgv ?? process.execArgv);
  const environment = {
    clean: findings.clean,
    startedWithUnsafeEnvironment: !findings.clean,
    reexecutedClean: false,
    unsafeNames: findings.unsafe,
  };
  return {
    platform,
    applied: false,
    steps: skippedSteps(reason, environment),
    environment,
    platformFacts: readPlatformFacts(
      platform,
      safeCalls(() => options.syscalls ?? defaultCalls(platform)),
    ),
    hardeningVersion: HARDENING_VERSION,
  };
}

/** Re-reads platform facts on an explicit refresh (never per request). */
export function refreshPlatformFacts(report: HardeningReport, syscalls?: PlatformCalls): HardeningReport {
  const platform = report.platform as NodeJS.Platform;
  const calls = syscalls ?? defaultCalls(platform);
  return { ...report, platformFacts: readPlatformFacts(platform, calls) };
}

export function stepAchieved(report: HardeningReport, name: HardeningStep['name']): boolean {
  return report.steps.find((s) => s.name === name)?.achieved === true;
}

export type { HardeningReport, HardeningStep, PlatformFacts } from './types.ts';
