/**
 * Remembers the ephemeral public keys of accepted request envelopes for the freshness window
 * (SPEC §5: "already seen in that window" = replay). Memory is bounded: expired entries are
 * dropped as time passes and, when the cap is reached with nothing expired, new envelopes are
 * refused ('overloaded') rather than forgetting a key early, which would reopen a replay hole.
 */
import { encodeHex } from '../encoding/hex.ts';
import { E2EError } from './errors.ts';

export const DEFAULT_REPLAY_WINDOW_MS = 5 * 60 * 1000;
export const DEFAULT_FUTURE_SKEW_MS = 30 * 1000;
export const DEFAULT_REPLAY_MAX_ENTRIES = 100_000;

export interface ReplayGuardOptions {
  /** How long an envelope stays acceptable after its x-mesh-sent-at (default 5 min). */
  windowMs?: number;
  /** How far in the future x-mesh-sent-at may be (default 30 s); extends retention. */
  futureSkewMs?: number;
  maxEntries?: number;
  now?: () => number;
}

export class ReplayGuard {
  readonly windowMs: number;
  readonly futureSkewMs: number;
  readonly maxEntries: number;
  readonly #now: () => number;
  /** key (hex) → expiry ms. Insertion order ≈ expiry order, so pruning scans from the front. */
  #seen = new Map<string, number>();

  constructor(options: ReplayGuardOptions = {}) {
    this.windowMs = options.windowMs ?? DEFAULT_REPLAY_WINDOW_MS;
    this.futureSkewMs = options.futureSkewMs ?? DEFAULT_FUTURE_SKEW_MS;
    this.maxEntries = options.maxEntries ?? DEFAULT_REPLAY_MAX_ENTRIES;
    this.#now = options.now ?? Date.now;
    if (!(this.windowMs > 0) || !(this.futureSkewMs >= 0) || !(this.maxEntries >= 1)) {
      throw new RangeError('ReplayGuard options must be positive');
    }
  }

  get size(): number {
    return this.#seen.size;
  }

  /** True when `key` was accepted inside the window. */
  has(key: Uint8Array, nowMs: number = this.#now()): boolean {
    const expiry = this.#seen.get(encodeHex(key));
    return expiry !== undefined && expiry > nowMs;
  }

  /**
   * Records `key`, throwing E2EError 'replay' if it is already recorded, or 'overloaded' if the
   * window is full. Call only after the envelope authenticated and passed the freshness check,
   * so forged envelopes cannot pre-poison the guard with someone else's key.
   */
  checkAndRemember(key: Uint8Array, nowMs: number = this.#now()): void {
    this.#prune(nowMs);
    const id = encodeHex(key);
    const expiry = this.#seen.get(id);
    if (expiry !== undefined && expiry > nowMs) {
      throw new E2EError('replay', 'request envelope was already received (replay)');
    }
    if (this.#seen.size >= this.maxEntries) {
      throw new E2EError('overloaded', 'too many recent encrypted requests; try again later');
    }
    // Any envelope still acceptable has sent_at <= now + skew, so it expires by then + window.
    this.#seen.set(id, nowMs + this.windowMs + this.futureSkewMs);
  }

  clear(): void {
    this.#seen.clear();
  }

  #prune(nowMs: number): void {
    for (const [id, expiry] of this.#seen) {
      if (expiry > nowMs) break;
      this.#seen.delete(id);
    }
  }
}
