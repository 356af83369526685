import { createPrivateKey, sign as cryptoSign, generateKeyPair, type KeyObject } from 'node:crypto';
import { chmod, mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { pointFromKeyObject } from '../ecdsa.ts';
import type { AttestationKeyProvider } from './types.ts';

export const SOFTWARE_KEY_FILE = 'attestation-key.pem';

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * A P-256 key in a PEM file (mode 0600) in the data dir. Always reported as software:
 * anyone who can read the file can sign as this node.
 */
export class SoftwareKeyProvider implements AttestationKeyProvider {
  readonly kind = 'software' as const;
  readonly hardware = false;
  readonly path: string;
  readonly #key: KeyObject;
  readonly #point: Uint8Array;

  private constructor(path: string, key: KeyObject) {
    this.path = path;
    this.#key = key;
    this.#point = pointFromKeyObject(key);
  }

  /** Loads the key from `dataDir`, creating it on first use. */
  static async open(options: { dataDir: string; logger: Logger }): Promise<SoftwareKeyProvider> {
    const { dataDir, logger } = options;
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const path = join(dataDir, SOFTWARE_KEY_FILE);
    let pem = await readKeyFile(path, logger);
    if (pem === undefined) {
      const { privateKey } = await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' });
      const text = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
      try {
        // 'wx': never overwrite a key another process created meanwhile.
        const handle = await open(path, 'wx', 0o600);
        try {
          await handle.writeFile(text);
          await handle.sync();
        } finally {
          await handle.close();
        }
        logger.info({ path }, 'created software attestation key');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new ConfigError(`cannot write the attestation key file ${path}`, { cause: error });
        }
      }
      pem = await readKeyFile(path, logger);
      if (pem === undefined) throw new ConfigError(`attestation key file ${path} vanished`);
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch (cause) {
      throw new ConfigError(`attestation key file ${path} is not a valid PEM private key`, { cause });
    }
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new ConfigError(`attestation key file ${path} does not hold a P-256 key`);
    }
    return new SoftwareKeyProvider(path, key);
  }

  publicKey(): Uint8Array {
    return this.#point.slice();
  }

  sign(data: Uint8Array): Promise<Uint8Array> {
    // The callback form runs on the libuv thread pool instead of the event loop.
    return new Promise((resolve, reject) => {
      cryptoSign('sha256', data, { key: this.#key, dsaEncoding: 'der' }, (error, signature) => {
        if (error) reject(error);
        else resolve(new Uint8Array(signature));
      });
    });
  }
}

/** Reads the PEM; tightens a too-wide mode to 0600 or refuses the file when that is impossible. */
async function readKeyFile(path: string, logger: Logger): Promise<string | undefined> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read the attestation key file ${path}`, { cause: error });
  }
  if (!info.isFile()) throw new ConfigError(`attestation key path ${path} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) {
    throw new ConfigError(`attestation key file ${path} is owned by another user (uid ${info.uid})`);
  }
  if ((info.mode & 0o077) !== 0) {
    try {
      await chmod(path, 0o600);
    } catch (cause) {
      throw new ConfigError(
        `attestation key file ${path} is readable by others (mode ${(info.mode & 0o777).toString(8)}) and cannot be fixed`,
        { cause },
      );
    }
    const after = await stat(path);
    if ((after.mode & 0o077) !== 0) {
      throw new ConfigError(`attestation key file ${path} is readable by others and cannot be fixed`);
    }
    logger.warn(
      { path, mode: (info.mode & 0o777).toString(8) },
      'attestation key file mode was too wide; set to 600',
    );
  }
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read the attestation key file ${path}`, { cause });
  }
}
