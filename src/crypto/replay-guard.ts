/**
 * Remembers the ephemeral public keys of accepted request envelopes for the freshness window
 * (SPEC §5: "already seen in that window" = replay). Memory is bounded: keys are dropped as time
 * passes and, when the cap is reached with nothing expired, new envelopes are refused
 * ('overloaded') rather than forgetting a key early, which would reopen a replay hole.
 *
 * Compact, because the cap must be far above what a host can serve: a key is kept as a 64-bit
 * fingerprint (its first 8 bytes) in typed-array hash sets, one per slice of time, 16–32 bytes a
 * key (the sets are kept at most half full) instead of a hex string in a Map (~120). A whole slice
 * is dropped once all its keys have expired, so a key is kept up to one slice (5 % of the window)
 * longer than it must be, never shorter. A fingerprint can only make the guard stricter: two
 * different keys that share one (chance 2^-64 per pair for honest keys, which are uniformly random)
 * count as the same, so the later envelope is refused as a replay; sent again, it goes with a fresh
 * key. Slots are chosen by a hash keyed with per-process random seeds, so a sender choosing its
 * keys cannot pile them into one run of the table.
 *
 * One sender (the mesh peer a request came from, when the caller names it) may hold at most
 * `maxEntriesPerSender` (a quarter of the cap by default): a single peer flooding valid
 * envelopes is refused on its own instead of filling the guard and locking everyone else out.
 * Many colluding identities can still fill it; the cap then fails closed as before.
 */
import { randomFillSync } from 'node:crypto';
import { E2EError } from './errors.ts';

export const DEFAULT_REPLAY_WINDOW_MS = 5 * 60 * 1000;
export const DEFAULT_FUTURE_SKEW_MS = 30 * 1000;
/**
 * ≈ 3 000 encrypted requests/s sustained over the window plus skew, several times what a host
 * can open on a small machine; 21–32 MiB when full (the old Map held 100 000 in about as much).
 */
export const DEFAULT_REPLAY_MAX_ENTRIES = 1_000_000;
/** A key outlives its expiry by at most windowMs / SLICES_PER_WINDOW. */
const SLICES_PER_WINDOW = 20;

export interface ReplayGuardOptions {
  /** How long an envelope stays acceptable after its x-mesh-sent-at (default 5 min). */
  windowMs?: number;
  /** How far in the future x-mesh-sent-at may be (default 30 s); extends retention. */
  futureSkewMs?: number;
  maxEntries?: number;
  /** Keys one sender may hold at once (default a quarter of maxEntries). */
  maxEntriesPerSender?: number;
  now?: () => number;
}

/** Fingerprints of the keys accepted in one slice of time. */
interface Slice {
  /** floor(acceptedMs / sliceMs) of its keys. */
  index: number;
  keys: FingerprintSet;
  /** Keys per named sender in this slice (a sender's share is summed over the live slices). */
  senders: Map<string, number>;
}

export class ReplayGuard {
  readonly windowMs: number;
  readonly futureSkewMs: number;
  readonly maxEntries: number;
  readonly maxEntriesPerSender: number;
  readonly #now: () => number;
  readonly #sliceMs: number;
  /** Oldest first; at most SLICES_PER_WINDOW + a few, so totals are summed over them. */
  #slices: Slice[] = [];

  constructor(options: ReplayGuardOptions = {}) {
    this.windowMs = options.windowMs ?? DEFAULT_REPLAY_WINDOW_MS;
    this.futureSkewMs = options.futureSkewMs ?? DEFAULT_FUTURE_SKEW_MS;
    this.maxEntries = options.maxEntries ?? DEFAULT_REPLAY_MAX_ENTRIES;
    this.maxEntriesPerSender = options.maxEntriesPerSender ?? Math.max(1, Math.floor(this.maxEntries / 4));
    this.#now = options.now ?? Date.now;
    if (
      !(this.windowMs > 0) ||
      !(this.futureSkewMs >= 0) ||
      !(this.maxEntries >= 1) ||
      !(this.maxEntriesPerSender >= 1)
    ) {
      throw new RangeError('ReplayGuard options must be positive');
    }
    this.#sliceMs = Math.max(1, Math.ceil(this.windowMs / SLICES_PER_WINDOW));
  }

  /** Keys remembered now. */
  get size(): number {
    let size = 0;
    for (const slice of this.#slices) size += slice.keys.size;
    return size;
  }

  /** True when `key` was accepted and has not been forgotten yet. */
  has(key: Uint8Array, nowMs: number = this.#now()): boolean {
    this.#prune(nowMs);
    return this.#holds(fingerprint(key));
  }

  /**
   * Records `key`, throwing E2EError 'replay' if it is already recorded, or 'overloaded' if the
   * window is full or `sender` holds its share. Call only after the envelope authenticated and
   * passed the freshness check, so forged envelopes cannot pre-poison the guard with someone
   * else's key.
   */
  checkAndRemember(key: Uint8Array, nowMs: number = this.#now(), sender?: string): void {
    this.#prune(nowMs);
    const print = fingerprint(key);
    if (this.#holds(print)) {
      throw new E2EError('replay', 'request envelope was already received (replay)');
    }
    if (this.size >= this.maxEntries) {
      throw new E2EError('overloaded', 'too many recent encrypted requests; try again later');
    }
    if (sender !== undefined && this.#heldBy(sender) >= this.maxEntriesPerSender) {
      throw new E2EError('overloaded', 'too many recent encrypted requests from this peer; try again later');
    }
    const index = Math.floor(nowMs / this.#sliceMs);
    let slice = this.#slices.at(-1);
    // A clock that stepped back files the key under the later slice: kept longer, never shorter.
    if (slice === undefined || slice.index < index) {
      slice = { index, keys: new FingerprintSet(), senders: new Map() };
      this.#slices.push(slice);
    }
    slice.keys.add(print);
    if (sender !== undefined) slice.senders.set(sender, (slice.senders.get(sender) ?? 0) + 1);
  }

  /** Keys `sender` holds now. */
  heldBy(sender: string, nowMs: number = this.#now()): number {
    this.#prune(nowMs);
    return this.#heldBy(sender);
  }

  clear(): void {
    this.#slices = [];
  }

  #holds(print: Fingerprint): boolean {
    return this.#slices.some((slice) => slice.keys.has(print));
  }

  #heldBy(sender: string): number {
    let held = 0;
    for (const slice of this.#slices) held += slice.senders.get(sender) ?? 0;
    return held;
  }

  /** Drops slices whose every key has expired: accepted by their end, expired a window + skew later. */
  #prune(nowMs: number): void {
    const expired = this.#slices.findIndex(
      (slice) => (slice.index + 1) * this.#sliceMs + this.windowMs + this.futureSkewMs > nowMs,
    );
    this.#slices.splice(0, expired < 0 ? this.#slices.length : expired);
  }
}

/** A key's first 8 bytes as two words: [high, low]. */
type Fingerprint = readonly [number, number];

/** The key's fingerprint (the all-zero one marks empty slots, so a key with it is moved off it). */
function fingerprint(key: Uint8Array): Fingerprint {
  if (key.byteLength < 8) throw new E2EError('invalid_key', 'ephemeral key too short');
  const high = (key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24)) >>> 0;
  const low = (key[4]! | (key[5]! << 8) | (key[6]! << 16) | (key[7]! << 24)) >>> 0;
  return high === 0 && low === 0 ? [0, 1] : [high, low];
}

const SEEDS = randomFillSync(new Uint32Array(2));

/** murmur3's 32-bit finalizer: every input bit moves every output bit. */
function mix(value: number): number {
  let h = value;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** An open-addressing set of 64-bit fingerprints, kept at most half full. */
class FingerprintSet {
  /** [high, low] per slot; [0, 0] is an empty slot. */
  #slots = new Uint32Array(2 * 1024);
  #mask = 1023;
  size = 0;

  has(print: Fingerprint): boolean {
    const high = print[0];
    const low = print[1];
    const slots = this.#slots;
    for (let slot = this.#start(high, low); ; slot = (slot + 1) & this.#mask) {
      const h = slots[2 * slot]!;
      const l = slots[2 * slot + 1]!;
      if (h === high && l === low) return true;
      if (h === 0 && l === 0) return false;
    }
  }

  /** Adds a fingerprint the caller checked is absent. */
  add(print: Fingerprint): void {
    const high = print[0];
    const low = print[1];
    if (2 * (this.size + 1) > this.#mask + 1) this.#grow();
    this.#place(high, low);
    this.size += 1;
  }

  #start(high: number, low: number): number {
    return (mix(high ^ SEEDS[0]!) ^ mix(low ^ SEEDS[1]!)) & this.#mask;
  }

  #place(high: number, low: number): void {
    let slot = this.#start(high, low);
    while (this.#slots[2 * slot] !== 0 || this.#slots[2 * slot + 1] !== 0) slot = (slot + 1) & this.#mask;
    this.#slots[2 * slot] = high;
    this.#slots[2 * slot + 1] = low;
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Uint32Array(old.length * 2);
    this.#mask = old.length - 1;
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] !== 0 || old[i + 1] !== 0) this.#place(old[i]!, old[i + 1]!);
    }
  }
}
