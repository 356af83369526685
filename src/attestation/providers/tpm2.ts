import { execFile } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bufferView } from '../../encoding/bytes.ts';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { pointFromKeyObject, publicKeyFromPoint, rawSignatureToDer, verifyP256 } from '../ecdsa.ts';
import type { AttestationKeyProvider } from './types.ts';

/** Runs one tpm2-tools command (no shell); rejects with stderr on a non-zero exit. */
export type Tpm2Runner = (tool: string, args: string[]) => Promise<{ stdout: string; stderr: string }>;

export const TPM2_KEY_DIR = 'tpm2';
const PUB_FILE = 'ak.pub';
const PRIV_FILE = 'ak.priv';

// Storage primary template. Fixed explicitly so the same primary (and thus the ability to load
// our wrapped key) is re-derived from the owner seed on every start, whatever the tool defaults.
const PRIMARY_ARGS = [
  '-C',
  'o',
  '-g',
  'sha256',
  '-G',
  'ecc256:aes128cfb',
  '-a',
  'restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda',
];
// Signing key: created inside the TPM (sensitivedataorigin), never exportable (fixedtpm|fixedparent).
const KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign';

export function defaultTpm2Runner(options: { env: NodeJS.ProcessEnv; timeoutMs?: number }): Tpm2Runner {
  return (tool, args) =>
    new Promise((resolve, reject) => {
      execFile(
        tool,
        args,
        { env: options.env, timeout: options.timeoutMs ?? 30_000, maxBuffer: 1024 * 1024, encoding: 'utf8' },
        (error, stdout, stderr) => {
          if (error) {
            const detail = String(stderr).trim().split('\n').slice(-2).join(' | ');
            reject(new Error(`${tool} failed: ${detail || error.message}`, { cause: error }));
          } else resolve({ stdout: String(stdout), stderr: String(stderr) });
        },
      );
    });
}

/**
 * A P-256 key created inside a TPM 2.0 through tpm2-tools. The TPM-wrapped key blobs live in
 * `<dataDir>/tpm2/` (useless without this TPM); the storage primary is re-derived on every start,
 * so the same key survives restarts. Transient objects are flushed after each command because a
 * TPM without a resource manager (swtpm, raw /dev/tpm0) has only a few object slots.
 */
export class Tpm2KeyProvider implements AttestationKeyProvider {
  readonly kind = 'tpm2' as const;
  readonly hardware = true;
  readonly keyDir: string;
  readonly #run: Tpm2Runner;
  readonly #runDir: string;
  readonly #logger: Logger;
  #point: Uint8Array = new Uint8Array(0);
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(keyDir: string, runDir: string, run: Tpm2Runner, logger: Logger) {
    this.keyDir = keyDir;
    this.#runDir = runDir;
    this.#run = run;
    this.#logger = logger;
  }

  static async open(options: {
    dataDir: string;
    logger: Logger;
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
    runner?: Tpm2Runner;
  }): Promise<Tpm2KeyProvider> {
    const env = options.env ?? process.env;
    const run = options.runner ?? defaultTpm2Runner({ env, timeoutMs: options.timeoutMs });
    const keyDir = join(options.dataDir, TPM2_KEY_DIR);
    await mkdir(keyDir, { recursive: true, mode: 0o700 });
    const runDir = await mkdtemp(join(tmpdir(), 'mesh-llm-tpm2-'));
    const provider = new Tpm2KeyProvider(keyDir, runDir, run, options.logger);
    try {
      await provider.#initialize();
    } catch (error) {
      await rm(runDir, { recursive: true, force: true });
      if (error instanceof ConfigError) throw error;
      throw new ConfigError(`TPM 2.0 attestation key unavailable: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return provider;
  }

  publicKey(): Uint8Array {
    return this.#point.slice();
  }

  sign(data: Uint8Array): Promise<Uint8Array> {
    return this.#serialized(async () => {
      if (this.#closed) throw new Error('TPM provider is closed');
      try {
        return await this.#signOnce(data);
      } catch (error) {
        // A TPM restart invalidates saved contexts; reload once and retry.
        this.#logger.warn({ err: (error as Error).message }, 'TPM sign failed; reloading the key');
        await this.#loadKey();
        return await this.#signOnce(data);
      }
    });
  }

  async close(): Promise<void> {
    await this.#serialized(async () => {
      this.#closed = true;
      await rm(this.#runDir, { recursive: true, force: true });
    });
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => {});
    return next;
  }

  async #tool(tool: string, args: string[]): Promise<string> {
    try {
      return (await this.#run(tool, args)).stdout;
    } finally {
      // Best effort: objects left loaded would exhaust the TPM's transient slots.
      await this.#run('tpm2_flushcontext', ['-t']).catch(() => {});
    }
  }

  async #initialize(): Promise<void> {
    const pub = join(this.keyDir, PUB_FILE);
    const priv = join(this.keyDir, PRIV_FILE);
    const havePub = await exists(pub);
    const havePriv = await exists(priv);
    if (havePub !== havePriv) {
      throw new ConfigError(`incomplete TPM key in ${this.keyDir}: remove the directory to create a new key`);
    }
    await this.#createPrimary();
    if (!havePub) {
      // Create into temp names, then rename: a crash never leaves half a key.
      const tmpPub = join(this.#runDir, PUB_FILE);
      const tmpPriv = join(this.#runDir, PRIV_FILE);
      await this.#tool('tpm2_create', [
        '-C',
        this.#ctx('primary'),
        '-G',
        'ecc256:ecdsa-sha256',
        '-a',
        KEY_ATTRIBUTES,
        '-u',
        tmpPub,
        '-r',
        tmpPriv,
        '-Q',
      ]);
      await writeFile(pub, await readFile(tmpPub), { mode: 0o600 });
      await writeFile(`${priv}.tmp`, await readFile(tmpPriv), { mode: 0o600 });
      await rename(`${priv}.tmp`, priv);
      this.#logger.info({ dir: this.keyDir }, 'created TPM 2.0 attestation key');
    }
    try {
      await this.#loadKey(false);
    } catch (cause) {
      throw new ConfigError(
        `the TPM key in ${this.keyDir} cannot be loaded (was the TPM cleared?); remove that directory to create a new key`,
        { cause },
      );
    }
    const der = join(this.#runDir, 'ak.der');
    const info = await this.#tool('tpm2_readpublic', ['-c', this.#ctx('key'), '-f', 'der', '-o', der]);
    for (const attribute of ['fixedtpm', 'fixedparent', 'sensitivedataorigin', 'sign']) {
      if (!new RegExp(`attributes:\\s*\\n\\s*value:[^\\n]*\\b${attribute}\\b`).test(info)) {
        throw new ConfigError(`TPM key in ${this.keyDir} lacks the '${attribute}' attribute`);
      }
    }
    this.#point = pointFromKeyObject(
      createPublicKey({ key: await readFile(der), format: 'der', type: 'spki' }),
    );
    // Self-test: the TPM's signature must verify as ECDSA P-256/SHA-256 over the data.
    const probe = Buffer.from('mesh-llm-tpm2-self-test');
    if (!verifyP256(publicKeyFromPoint(this.#point), probe, await this.#signOnce(probe))) {
      throw new ConfigError('TPM signature self-test failed');
    }
  }

  #ctx(name: 'primary' | 'key'): string {
    return join(this.#runDir, `${name}.ctx`);
  }

  async #createPrimary(): Promise<void> {
    await this.#tool('tpm2_createprimary', [...PRIMARY_ARGS, '-c', this.#ctx('primary'), '-Q']);
  }

  async #loadKey(primaryFresh = true): Promise<void> {
    if (primaryFresh) await this.#createPrimary();
    await this.#tool('tpm2_load', [
      '-C',
      this.#ctx('primary'),
      '-u',
      join(this.keyDir, PUB_FILE),
      '-r',
      join(this.keyDir, PRIV_FILE),
      '-c',
      this.#ctx('key'),
      '-Q',
    ]);
  }

  async #signOnce(data: Uint8Array): Promise<Uint8Array> {
    // We hash (SHA-256) and let the TPM sign the digest: exactly one hash, as the spec requires.
    const digestFile = join(this.#runDir, 'digest.bin');
    const sigFile = join(this.#runDir, 'sig.bin');
    await writeFile(digestFile, createHash('sha256').update(data).digest());
    await rm(sigFile, { force: true });
    await this.#tool('tpm2_sign', [
      '-c',
      this.#ctx('key'),
      '-g',
      'sha256',
      '-s',
      'ecdsa',
      '-d',
      '-o',
      sigFile,
      digestFile,
    ]);
    return tpmSignatureToDer(new Uint8Array(await readFile(sigFile)));
  }
}

/**
 * Converts tpm2_sign output to DER: a TPMT_SIGNATURE (ECDSA/SHA-256, the default "tss" format),
 * a plain r||s (64 bytes), or DER already (what `-f plain` yields in tpm2-tools 5.x).
 */
export function tpmSignatureToDer(bytes: Uint8Array): Uint8Array {
  const view = bufferView(bytes);
  if (view.byteLength >= 8 && view.readUInt16BE(0) === 0x0018) {
    if (view.readUInt16BE(2) !== 0x000b) throw new Error('TPM signature hash is not SHA-256');
    let offset = 4;
    const part = (): Uint8Array => {
      if (offset + 2 > view.byteLength) throw new Error('truncated TPM signature');
      const size = view.readUInt16BE(offset);
      offset += 2;
      if (size === 0 || size > 32 || offset + size > view.byteLength)
        throw new Error('bad TPM signature part');
      const out = view.subarray(offset, offset + size);
      offset += size;
      return out;
    };
    const r = part();
    const s = part();
    if (offset !== view.byteLength) throw new Error('trailing bytes after TPM signature');
    return rawSignatureToDer(r, s);
  }
  if (view.byteLength === 64) return rawSignatureToDer(view.subarray(0, 32), view.subarray(32));
  if (view[0] === 0x30 && view[1] === view.byteLength - 2) return new Uint8Array(view);
  throw new Error('unrecognised TPM signature format');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
