import type { ComponentLogger, Logger } from '@libp2p/interface';

/**
 * libp2p creates a debug logger for every stream and every protocol negotiation, and each one
 * probes the terminal (isatty) as it is made: a measurable share of a remote request's CPU.
 * Those loggers print nothing unless DEBUG selects them, so unless DEBUG is set (then libp2p
 * keeps its own, for troubleshooting) it gets loggers that cost nothing to create.
 */
export function libp2pComponentLogger(env: NodeJS.ProcessEnv = process.env): ComponentLogger | undefined {
  if (env.DEBUG !== undefined && env.DEBUG !== '') return undefined;
  return { forComponent: () => SILENT };
}

const SILENT: Logger = Object.assign(() => undefined, {
  error: () => undefined,
  trace: () => undefined,
  enabled: false,
  newScope: (): Logger => SILENT,
});
