import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { decodeBase64Strict } from '../encoding/base64.ts';
import { ConfigError } from '../errors.ts';
import { writeFileAtomic } from '../files/atomic-write.ts';

export const PINS_FILE = 'attestation-pins.json';

export interface PinEntry {
  /** Standard base64 of the pinned uncompressed P-256 point. */
  key: string;
  pinnedAtMs: number;
}

type PinListener = (endpointId: string) => void;

/** Bounds of the pin store (issue #15): a flood of fake peers must not grow it or the disk work. */
export const PIN_BOUNDS = {
  /** Pins kept; past it the least recently seen peer's pin goes. */
  maxPins: 4096,
  /** A pin whose peer has not been seen for this long is forgotten (re-trusted on next sight). */
  expireAfterMs: 30 * 24 * 3600_000,
  /** Pins made within this window share one write (and one fsync). */
  batchMs: 250,
  /** How stale the persisted "last seen" time may get before a write refreshes it. */
  seenResolutionMs: 3600_000,
} as const;

export interface PinStoreOptions {
  dataDir: string;
  path?: string;
  clock?: () => number;
  maxPins?: number;
  expireAfterMs?: number;
  batchMs?: number;
}

interface StoredPin extends PinEntry {
  /** When the peer last presented this key (clock time); drives expiry and eviction. */
  seenAtMs: number;
  /** The seenAtMs value on disk. */
  persistedSeenAtMs: number;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Trust-on-first-use pins of attestation keys per endpoint, persisted as JSON
 * ({"version":1,"pins":{endpoint:{key,pinnedAtMs,seenAtMs}}}) with atomic writes (tmp + rename,
 * 0600). Lookups are in memory; writes are batched and serialized so the file always holds a
 * complete state. Capped (least recently seen evicted) and expiring (long-unseen peers).
 */
export class PinStore {
  readonly path: string;
  readonly #pins: Map<string, StoredPin>;
  readonly #listeners = new Set<PinListener>();
  readonly #clock: () => number;
  readonly #maxPins: number;
  readonly #expireAfterMs: number;
  readonly #batchMs: number;
  #writing: Promise<void> = Promise.resolve();
  #batch: Promise<void> | undefined;
  #writes = 0;

  private constructor(path: string, pins: Map<string, StoredPin>, options: PinStoreOptions) {
    this.path = path;
    this.#pins = pins;
    this.#clock = options.clock ?? Date.now;
    this.#maxPins = options.maxPins ?? PIN_BOUNDS.maxPins;
    this.#expireAfterMs = options.expireAfterMs ?? PIN_BOUNDS.expireAfterMs;
    this.#batchMs = options.batchMs ?? PIN_BOUNDS.batchMs;
  }

  /** Opens `<dataDir>/attestation-pins.json` (or `options.path`); a corrupt file is a ConfigError. */
  static async open(options: PinStoreOptions): Promise<PinStore> {
    const path = options.path ?? join(options.dataDir, PINS_FILE);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ConfigError(`cannot read attestation pins ${path}`, { cause: error });
      }
    }
    const now = (options.clock ?? Date.now)();
    const store = new PinStore(path, text === undefined ? new Map() : parsePins(text, path, now), options);
    store.#expire();
    return store;
  }

  lookup(endpointId: string): PinEntry | undefined {
    const entry = this.#pins.get(endpointId);
    return entry && { key: entry.key, pinnedAtMs: entry.pinnedAtMs };
  }

  list(): Array<{ endpointId: string } & PinEntry> {
    return [...this.#pins].map(([endpointId, { key, pinnedAtMs }]) => ({ endpointId, key, pinnedAtMs }));
  }

  /** Files written so far (each one fsync): for tests and diagnostics. */
  get writes(): number {
    return this.#writes;
  }

  /** Pins `keyB64` for the endpoint (replacing any previous pin); resolves once on disk. */
  async pin(endpointId: string, keyB64: string, nowMs: number): Promise<void> {
    if (!HEX64.test(endpointId)) throw new ConfigError('pin: endpoint id must be 64 lower-case hex digits');
    if (decodeBase64Strict(keyB64)?.byteLength !== 65)
      throw new ConfigError('pin: key must be base64 of 65 bytes');
    const seen = this.#clock();
    this.#pins.delete(endpointId);
    this.#pins.set(endpointId, { key: keyB64, pinnedAtMs: nowMs, seenAtMs: seen, persistedSeenAtMs: seen });
    this.#evict();
    await this.#persist();
    this.#emit(endpointId);
  }

  /**
   * The peer presented its pinned key again: keeps the pin from expiring. Written lazily (with
   * the next batch, or once the stored time is an hour stale), never awaited.
   */
  seen(endpointId: string): void {
    const entry = this.#pins.get(endpointId);
    if (entry === undefined) return;
    entry.seenAtMs = this.#clock();
    if (entry.seenAtMs - entry.persistedSeenAtMs > PIN_BOUNDS.seenResolutionMs) {
      this.#persist().catch(() => undefined);
    }
  }

  #evict(): void {
    if (this.#pins.size <= this.#maxPins) return;
    const byAge = [...this.#pins].sort((a, b) => a[1].seenAtMs - b[1].seenAtMs);
    for (const [endpointId] of byAge.slice(0, this.#pins.size - this.#maxPins)) this.#pins.delete(endpointId);
  }

  #expire(): void {
    const cutoff = this.#clock() - this.#expireAfterMs;
    for (const [endpointId, entry] of this.#pins) if (entry.seenAtMs < cutoff) this.#pins.delete(endpointId);
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

  /** Joins the pending batch, or starts one: one write for every change within batchMs. */
  #persist(): Promise<void> {
    if (this.#batch !== undefined) return this.#batch;
    const batch = new Promise<void>((resolve) => setTimeout(resolve, this.#batchMs).unref()).then(() => {
      this.#batch = undefined;
      const next = this.#writing.then(() => this.#write());
      // Keep the chain alive after a failed write; the callers still see the failure.
      this.#writing = next.catch(() => {});
      return next;
    });
    this.#batch = batch;
    return batch;
  }

  async #write(): Promise<void> {
    this.#expire();
    this.#writes++;
    const pins: Record<string, PinEntry & { seenAtMs: number }> = {};
    for (const [endpointId, entry] of this.#pins) {
      entry.persistedSeenAtMs = entry.seenAtMs;
      pins[endpointId] = { key: entry.key, pinnedAtMs: entry.pinnedAtMs, seenAtMs: entry.seenAtMs };
    }
    const body = `${JSON.stringify({ version: 1, pins }, null, 2)}\n`;
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    try {
      await writeFileAtomic(this.path, body);
    } catch (cause) {
      throw new ConfigError(`cannot write attestation pins ${this.path}`, { cause });
    }
  }
}

function parsePins(text: string, path: string, now: number): Map<string, StoredPin> {
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
  const out = new Map<string, StoredPin>();
  for (const [endpointId, entry] of Object.entries(pins as Record<string, unknown>)) {
    if (!HEX64.test(endpointId)) fail(`bad endpoint id '${endpointId.slice(0, 80)}'`);
    const { key, pinnedAtMs, seenAtMs } = (entry ?? {}) as {
      key?: unknown;
      pinnedAtMs?: unknown;
      seenAtMs?: unknown;
    };
    if (typeof key !== 'string' || decodeBase64Strict(key)?.byteLength !== 65)
      fail(`bad key for ${endpointId}`);
    if (typeof pinnedAtMs !== 'number' || !Number.isFinite(pinnedAtMs))
      fail(`bad pinnedAtMs for ${endpointId}`);
    if (seenAtMs !== undefined && (typeof seenAtMs !== 'number' || !Number.isFinite(seenAtMs)))
      fail(`bad seenAtMs for ${endpointId}`);
    // A file from before expiry starts every pin's clock now.
    const seen = (seenAtMs as number | undefined) ?? now;
    out.set(endpointId, {
      key: key as string,
      pinnedAtMs: pinnedAtMs as number,
      seenAtMs: seen,
      persistedSeenAtMs: seen,
    });
  }
  return out;
}
