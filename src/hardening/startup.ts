import { type ApplyHardeningOptions, applyHardening } from './harden.ts';
import { planStartup, reexecute, stripStartupFlags } from './reexec.ts';
import type { HardeningReport } from './types.ts';

export type StartupOutcome =
  | { kind: 'exited'; code: number }
  | { kind: 'continue'; report: HardeningReport; args: string[] };

/**
 * The process entry's first step: re-execute cleanly when needed (the parent then only
 * waits and relays the exit code), otherwise harden this process and hand over.
 * Imports nothing heavy: it runs before libp2p and the backend are loaded.
 */
export async function hardenedStartup(options: {
  argv: readonly string[];
  scriptPath: string;
  hardening?: ApplyHardeningOptions;
}): Promise<StartupOutcome> {
  const plan = planStartup({
    argv: options.argv,
    scriptPath: options.scriptPath,
    env: options.hardening?.env,
    execArgv: options.hardening?.execArgv,
  });
  if (plan.action === 'reexec') return { kind: 'exited', code: await reexecute(plan) };
  const report = applyHardening(options.hardening);
  return { kind: 'continue', report, args: stripStartupFlags(options.argv) };
}
