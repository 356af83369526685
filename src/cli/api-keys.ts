import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';

/** A key as a client sends it after `Bearer `: visible ASCII, no spaces. */
const KEY = /^[\x21-\x7e]{8,1024}$/;

/**
 * The ingress keys from `--api-key` (repeatable) and `--api-keys-file` (one key a line; blank
 * lines and lines starting with # are skipped). Messages never echo a key.
 */
export function apiKeysFromFlags(keys: readonly string[] | undefined, file: string | undefined): string[] {
  const all: { key: string; where: string }[] = (keys ?? []).map((key, i) => ({
    key,
    where: `--api-key #${i + 1}`,
  }));
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(
        `cannot read --api-keys-file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const lines = text.split(/\r?\n/);
    for (const [i, line] of lines.entries()) {
      const key = line.trim();
      if (key !== '' && !key.startsWith('#')) all.push({ key, where: `${file} line ${i + 1}` });
    }
    if (!all.some((k) => k.where.startsWith(file)))
      throw new ConfigError(`--api-keys-file ${file} holds no key`);
  }
  for (const { key, where } of all) {
    if (!KEY.test(key)) {
      throw new ConfigError(`${where}: an API key must be 8 to 1024 visible ASCII characters without spaces`);
    }
  }
  return [...new Set(all.map((k) => k.key))];
}
