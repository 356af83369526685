import { spawn } from 'node:child_process';
import {
  ALLOW_UNSAFE_ENV_FLAG,
  cleanEnvironment,
  encodeNames,
  inspectEnvironment,
  NO_HARDENING_VAR,
  partitionExecArgv,
  REEXEC_MARKER,
  REEXEC_PARENT_UNSAFE,
  userOptedOut,
} from './env.ts';

/** Commands that host (or report what hosting would achieve) get the clean re-exec. */
export const REEXEC_COMMANDS: ReadonlySet<string> = new Set(['serve', 'demo', 'posture']);

export type StartupPlan =
  | { action: 'continue'; reason: string; unsafe: string[] }
  | {
      action: 'reexec';
      reason: string;
      unsafe: string[];
      execArgs: string[];
      env: NodeJS.ProcessEnv;
    };

export interface PlanOptions {
  /** CLI arguments after the script path. */
  argv: readonly string[];
  /** The script to run again (the bin file or the bundle). */
  scriptPath: string;
  env?: NodeJS.ProcessEnv;
  execArgv?: readonly string[];
  /** Whether this Node knows --disable-sigusr1 (≥ 22.14). */
  supportsDisableSigusr1?: boolean;
}

export function commandOf(argv: readonly string[]): string | undefined {
  return argv.find((a) => !a.startsWith('-'));
}

/**
 * Decides whether to re-execute once with a clean environment. Scrubbing a running process
 * cannot undo an LD_PRELOAD or a --require that already ran, so a clean child is the only fix.
 */
export function planStartup(options: PlanOptions): StartupPlan {
  const env = options.env ?? process.env;
  const execArgv = options.execArgv ?? process.execArgv;
  const findings = inspectEnvironment(env, execArgv);
  const unsafe = findings.unsafe;
  if (env[REEXEC_MARKER] === '1') return { action: 'continue', reason: 'already re-executed', unsafe };
  if (findings.clean) return { action: 'continue', reason: 'environment clean', unsafe };
  if (env[NO_HARDENING_VAR] === '1') return { action: 'continue', reason: 'hardening disabled', unsafe };
  if (userOptedOut(env, options.argv)) return { action: 'continue', reason: 'user opted out', unsafe };
  const command = commandOf(options.argv);
  if (!command || !REEXEC_COMMANDS.has(command)) {
    return { action: 'continue', reason: `command ${command ?? '(none)'} does not host`, unsafe };
  }
  const supports =
    options.supportsDisableSigusr1 ?? process.allowedNodeEnvironmentFlags.has('--disable-sigusr1');
  const safeArgv = partitionExecArgv(execArgv).safe.filter((a) => a !== '--disable-sigusr1');
  const childEnv = cleanEnvironment(env);
  childEnv[REEXEC_MARKER] = '1';
  childEnv[REEXEC_PARENT_UNSAFE] = encodeNames(unsafe);
  return {
    action: 'reexec',
    reason: 'unsafe start-up environment',
    unsafe,
    execArgs: [...(supports ? ['--disable-sigusr1'] : []), ...safeArgv, options.scriptPath, ...options.argv],
    env: childEnv,
  };
}

const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Runs the clean child with inherited stdio, forwards termination signals, and resolves with
 * its exit code. A child killed by a signal makes this process die of the same signal.
 */
export function reexecute(
  plan: Extract<StartupPlan, { action: 'reexec' }>,
  execPath: string = process.execPath,
): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(execPath, plan.execArgs, { env: plan.env, stdio: 'inherit' });
    const forward = (signal: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    for (const s of FORWARDED_SIGNALS) process.on(s, forward);
    const cleanup = () => {
      for (const s of FORWARDED_SIGNALS) process.off(s, forward);
    };
    child.once('error', (err) => {
      cleanup();
      process.stderr.write(`mesh-llm: could not re-execute with a clean environment: ${err.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => {
      cleanup();
      if (signal) {
        process.kill(process.pid, signal);
        // If the signal is ignored here, still report failure.
        resolve(128 + 1);
        return;
      }
      resolve(code ?? 1);
    });
  });
}

/** Removes flags that only the start-up layer understands before the CLI parses argv. */
export function stripStartupFlags(argv: readonly string[]): string[] {
  return argv.filter((a) => a !== ALLOW_UNSAFE_ENV_FLAG);
}
