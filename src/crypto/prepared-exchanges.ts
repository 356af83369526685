/**
 * Ephemeral key exchanges made ahead of the requests that will use them. Sealing a request costs
 * two X25519 operations on the sender (a fresh keypair and the shared key towards the host),
 * the largest part of what encryption adds to a request's latency. A sender that has just
 * talked to a host prepares the next exchanges for it while it waits for the answer, so the next
 * request to that host seals with symmetric crypto only.
 *
 * Forward secrecy is unchanged: the ephemeral secret is wiped as soon as the shared key is
 * derived, exactly as when sealing inline, and each prepared exchange is handed out once. A
 * prepared key has protected nothing yet; it lives in locked memory, at most `ttlMs`, and is
 * wiped when it expires, is dropped or the cache is cleared.
 */
import { encodeHex } from '../encoding/hex.ts';
import { ephemeralBoxKey, PUBLIC_KEY_BYTES, wipe } from './sodium.ts';

/** One prepared exchange: the caller owns `sharedKey` (a pooled secure slot) once taken. */
export interface EphemeralExchange {
  ephemeralPublicKey: Uint8Array;
  sharedKey: Uint8Array;
}

export interface PreparedExchangesOptions {
  /** Exchanges kept ready per host key (default 2). */
  perHost?: number;
  /** Host keys prepared for at once; the least recently used is dropped first (default 32). */
  maxHosts?: number;
  /** A prepared exchange older than this is wiped instead of used (default 30 s). */
  ttlMs?: number;
  clock?: () => number;
}

interface Prepared extends EphemeralExchange {
  madeAtMs: number;
}

export class PreparedExchanges {
  readonly #perHost: number;
  readonly #maxHosts: number;
  readonly #ttlMs: number;
  readonly #clock: () => number;
  /** Keyed by the host key's hex; Map order is least recently used first. */
  readonly #hosts = new Map<string, Prepared[]>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(options: PreparedExchangesOptions = {}) {
    this.#perHost = options.perHost ?? 2;
    this.#maxHosts = options.maxHosts ?? 32;
    this.#ttlMs = options.ttlMs ?? 30_000;
    this.#clock = options.clock ?? Date.now;
  }

  /** A fresh exchange towards `hostPublicKey`, or undefined (the caller makes one inline). */
  take(hostPublicKey: Uint8Array): EphemeralExchange | undefined {
    const ready = this.#hosts.get(encodeHex(hostPublicKey));
    const oldest = this.#clock() - this.#ttlMs;
    for (let next = ready?.shift(); next !== undefined; next = ready?.shift()) {
      if (next.madeAtMs >= oldest) return next;
      wipe(next.sharedKey);
    }
    return undefined;
  }

  /**
   * Tops `hostPublicKey` up to `perHost` exchanges (two X25519 operations each). Meant to run
   * while the sender waits for an answer; an invalid key prepares nothing (sealing reports it).
   */
  prepare(hostPublicKey: Uint8Array): void {
    if (hostPublicKey.byteLength !== PUBLIC_KEY_BYTES) return;
    const host = encodeHex(hostPublicKey);
    const ready = this.#hosts.get(host) ?? [];
    this.#hosts.delete(host); // re-inserted below as the most recently used
    this.#hosts.set(host, ready);
    while (ready.length < this.#perHost) {
      try {
        ready.push({ ...ephemeralBoxKey(hostPublicKey), madeAtMs: this.#clock() });
      } catch {
        break; // a low-order key: sealRequest refuses it with a typed error
      }
    }
    for (const [oldHost, stale] of this.#hosts) {
      if (this.#hosts.size <= this.#maxHosts) break;
      this.#hosts.delete(oldHost);
      for (const exchange of stale) wipe(exchange.sharedKey);
    }
    // Expired keys are wiped on a timer too, so an idle sender keeps none past ttlMs (unref'd:
    // it never keeps the process alive; it stops once nothing is held).
    this.#sweeper ??= setInterval(() => this.sweep(), Math.max(1_000, this.#ttlMs / 2)).unref();
  }

  /** Wipes expired exchanges; runs on a timer while any are held, public so tests can drive it. */
  sweep(): void {
    const oldest = this.#clock() - this.#ttlMs;
    for (const [host, ready] of this.#hosts) {
      const kept: Prepared[] = [];
      for (const exchange of ready) {
        if (exchange.madeAtMs >= oldest) kept.push(exchange);
        else wipe(exchange.sharedKey);
      }
      if (kept.length === 0) this.#hosts.delete(host);
      else this.#hosts.set(host, kept);
    }
    if (this.#hosts.size === 0) this.#stopSweeper();
  }

  /** Exchanges ready for `hostPublicKey` (tests, diagnostics). */
  size(hostPublicKey: Uint8Array): number {
    return this.#hosts.get(encodeHex(hostPublicKey))?.length ?? 0;
  }

  /** Wipes every prepared key (node shutdown). */
  clear(): void {
    for (const ready of this.#hosts.values()) for (const exchange of ready) wipe(exchange.sharedKey);
    this.#hosts.clear();
    this.#stopSweeper();
  }

  #stopSweeper(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}
