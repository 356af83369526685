import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ConfigError } from '../errors.ts';

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with readable errors instead of stack traces. */
export function parseFlags<T extends Options>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new ConfigError((error as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
}

/** For commands that take flags only: names the first stray argument. */
export function rejectPositionals(positionals: readonly string[]): void {
  if (positionals.length > 0) throw new ConfigError(`unexpected argument '${positionals[0]}'`);
}

export function portFlag(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${flag} must be a port number between 0 and 65535, got '${value}'`);
  }
  return port;
}

export function positiveIntFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new ConfigError(`${flag} must be a positive whole number, got '${value}'`);
  return n;
}

export function choiceFlag<C extends string>(
  value: string | undefined,
  flag: string,
  choices: readonly C[],
  fallback: C,
): C {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value)) {
    throw new ConfigError(`${flag} must be one of ${choices.join(', ')}; got '${value}'`);
  }
  return value as C;
}
