import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';

/**
 * `--join TOKEN` and `--join-file FILE|-` together. A token given on the command line is
 * readable by every local user in /proc/PID/cmdline; a file (mode 0600) or stdin is not. One
 * token per line; blank lines and `#` comments are skipped. Never echoes a token.
 */
export function joinTokensFromFlags(
  tokens: readonly string[] | undefined,
  files: readonly string[] | undefined,
  readStdin: () => string = () => readFileSync(0, 'utf8'),
): string[] {
  const all = [...(tokens ?? [])];
  for (const file of files ?? []) {
    let text: string;
    try {
      text = file === '-' ? readStdin() : readFileSync(file, 'utf8');
    } catch (error) {
      const where = file === '-' ? 'standard input' : file;
      throw new ConfigError(
        `cannot read --join-file ${where}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const found = text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    if (found.length === 0) {
      throw new ConfigError(`--join-file ${file === '-' ? 'standard input' : file} holds no invite token`);
    }
    all.push(...found);
  }
  return [...new Set(all)];
}
