import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { decodeBase64Strict } from '../encoding/base64.ts';
import { ConfigError } from '../errors.ts';

export const PINS_FILE = 'attestation-pins.json';

export interface PinEntry {
  /** Standard base64 of the pinned uncompressed P-256 point. */
  key: string;
  pinnedAtMs: number;
}

type PinListener = (endpointId: string) => void;

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Trust-on-first-use pins of attestation keys per endpoint, persisted as JSON
 * ({"version":1,"pins":{endpoint:{key,pinnedAtMs}}}) with atomic writes (tmp + rename, 0600).
 * Lookups are in memory; writes are serialized so the file always holds a complete state.
 */
export class PinStore {
  readonly path: string;
  readonly #pins: Map<string, PinEntry>;
  readonly #listeners = new Set<PinListener>();
  #writing: Promise<void> = Promise.resolve();

  private constructor(path: string, pins: Map<string, PinEntry>) {
    this.path = path;
    this.#pins = pins;
  }

  /** Opens `<dataDir>/attestation-pins.json` (or `options.path`); a corrupt file is a ConfigError. */
  static async open(options: { dataDir: string; path?: string }): Promise<PinStore> {
    const path = options.path ?? join(options.dataDir, PINS_FILE);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ConfigError(`cannot read attestation pins ${path}`, { cause: error });
      }
    }
    return new PinStore(path, text === undefined ? new Map() : parsePins(text, path));
  }

  lookup(endpointId: string): PinEntry | undefined {
    const entry = this.#pins.get(endpointId);
    return entry && { ...entry };
  }

  list(): Array<{ endpointId: string } & PinEntry> {
    return [...this.#pins].map(([endpointId, entry]) => ({ endpointId, ...entry }));
  }

  /** Pins `keyB64` for the endpoint (replacing any previous pin) and persists. */
  async pin(endpointId: string, keyB64: string, nowMs: number): Promise<void> {
    if (!HEX64.test(endpointId)) throw new ConfigError('pin: endpoint id must be 64 lower-case hex digits');
    if (decodeBase64Strict(keyB64)?.byteLength !== 65)
      throw new ConfigError('pin: key must be base64 of 65 bytes');
    this.#pins.set(endpointId, { key: keyB64, pinnedAtMs: nowMs });
    await this.#persist();
    this.#emit(endpointId);
  }

  /** Forgets the pin so the next valid statement is trusted anew (operator re-trust). */
  async reset(endpointId: string): Promise<boolean> {
    const existed = this.#pins.delete(endpointId);
    if (existed) {
      await this.#persist();
      this.#emit(endpointId);
    }
    return existed;
  }

  /** Called with the endpoint id whenever its pin changes; returns an unsubscribe function. */
  onChange(listener: PinListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(endpointId: string): void {
    for (const listener of this.#listeners) listener(endpointId);
  }

  #persist(): Promise<void> {
    const next = this.#writing.then(() => this.#write());
    // Keep the chain alive after a failed write; the caller still sees the failure.
    this.#writing = next.catch(() => {});
    return next;
  }

  async #write(): Promise<void> {
    const pins: Record<string, PinEntry> = {};
    for (const [endpointId, entry] of this.#pins) pins[endpointId] = entry;
    const body = `${JSON.stringify({ version: 1, pins }, null, 2)}\n`;
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const handle = await open(tmp, 'wx', 0o600);
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, this.path);
    } catch (cause) {
      await rm(tmp, { force: true });
      throw new ConfigError(`cannot write attestation pins ${this.path}`, { cause });
    }
  }
}

function parsePins(text: string, path: string): Map<string, PinEntry> {
  const fail = (message: string): never => {
    throw new ConfigError(`attestation pins ${path}: ${message} (fix or delete the file to re-trust peers)`);
  };
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch {
    return fail('not valid JSON');
  }
  if (root === null || typeof root !== 'object' || Array.isArray(root)) return fail('not an object');
  const { version, pins } = root as { version?: unknown; pins?: unknown };
  if (version !== 1) fail('unsupported version');
  if (pins === null || typeof pins !== 'object' || Array.isArray(pins))
    return fail('"pins" must be an object');
  const out = new Map<string, PinEntry>();
  for (const [endpointId, entry] of Object.entries(pins as Record<string, unknown>)) {
    if (!HEX64.test(endpointId)) fail(`bad endpoint id '${endpointId.slice(0, 80)}'`);
    const { key, pinnedAtMs } = (entry ?? {}) as { key?: unknown; pinnedAtMs?: unknown };
    if (typeof key !== 'string' || decodeBase64Strict(key)?.byteLength !== 65)
      fail(`bad key for ${endpointId}`);
    if (typeof pinnedAtMs !== 'number' || !Number.isFinite(pinnedAtMs))
      fail(`bad pinnedAtMs for ${endpointId}`);
    out.set(endpointId, { key: key as string, pinnedAtMs: pinnedAtMs as number });
  }
  return out;
}
