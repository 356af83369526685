import { randomBytes } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';

/**
 * The console's local credential: a random secret in a 0600 file in the data dir. Whoever can
 * read the file (the node's own user) may see the invite token and change state through the
 * console; a web page or another local user cannot.
 */
export const CONSOLE_CREDENTIAL_FILE = 'console-credential';

const CREDENTIAL = /^[A-Za-z0-9_-]{43}$/;

/** Reads the credential, creating it (0600) on first start; a file others can read is tightened. */
export async function ensureConsoleCredential(dataDir: string): Promise<string> {
  const path = join(dataDir, CONSOLE_CREDENTIAL_FILE);
  const existing = await readFile(path, 'utf8').catch(() => undefined);
  if (existing !== undefined && CREDENTIAL.test(existing.trim())) {
    if (((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
    return existing.trim();
  }
  const credential = randomBytes(32).toString('base64url');
  await writeFile(path, `${credential}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
  return credential;
}

/** For CLI commands talking to a running node: the credential of the node using `dataDir`. */
export async function readConsoleCredential(dataDir: string): Promise<string> {
  const path = join(dataDir, CONSOLE_CREDENTIAL_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `cannot read the console credential ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'}): run this as the user who runs the node, and pass --data-dir if the node uses another one`,
    );
  }
  const credential = text.trim();
  if (!CREDENTIAL.test(credential)) throw new ConfigError(`${path} does not hold a console credential`);
  return credential;
}
