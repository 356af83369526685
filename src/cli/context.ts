import type { HardeningReport } from '../hardening/harden.ts';

/** What every command receives from the process entry (kept apart from main.ts, which loads the commands). */
export interface CliContext {
  /** What the process entry achieved before anything else ran (SPEC §7). */
  hardening?: HardeningReport;
}
