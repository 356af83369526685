import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';
export type LogFormat = 'pretty' | 'json';

/**
 * Builds the process logger. Log lines carry ids, sizes, statuses and timings only:
 * never prompt text, completions, keys or invite tokens.
 */
export function createLogger(
  options: { format?: LogFormat; level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const level = options.level ?? process.env.MESH_LLM_LOG_LEVEL ?? 'info';
  const destination = options.destination ?? process.stderr;
  if (options.format === 'json') {
    return pino({ level, name: options.name, base: undefined }, destination as pino.DestinationStream);
  }
  return pino(
    { level, name: options.name, base: undefined, timestamp: false },
    prettyDestination(destination),
  );
}

/** A tiny human formatter so the default output is readable without pino-pretty. */
function prettyDestination(out: NodeJS.WritableStream): pino.DestinationStream {
  return {
    write(line: string) {
      try {
        const { level, msg, name, time: _t, ...rest } = JSON.parse(line) as Record<string, unknown>;
        const label = pino.levels.labels[level as number] ?? String(level);
        const extras = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ');
        out.write(
          `${label.padEnd(5)} ${name ? `[${name}] ` : ''}${msg ?? ''}${extras ? `  ${extras}` : ''}\n`,
        );
      } catch {
        out.write(line);
      }
    },
  };
}

/** A logger that drops everything, for tests that assemble components in-process. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
