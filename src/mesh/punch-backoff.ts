import { setNewest } from './bounded-map.ts';

/**
 * When to try a hole punch towards a peer again. A round of tries can fail for a passing
 * reason (the peer's membership not gossiped yet, a busy machine) as well as for good (a
 * symmetric NAT), so a peer is retried after a wait that doubles each failed round, from
 * `firstMs` up to `maxMs`. At most `maxPeers` peers are remembered (the oldest go first).
 */
export interface PunchBackoffBounds {
  readonly firstMs: number;
  readonly maxMs: number;
  readonly maxPeers: number;
}

export class PunchBackoff {
  readonly #bounds: PunchBackoffBounds;
  readonly #clock: () => number;
  readonly #peers = new Map<string, { rounds: number; until: number }>();

  constructor(bounds: PunchBackoffBounds, clock: () => number) {
    this.#bounds = bounds;
    this.#clock = clock;
  }

  mayTry(peer: string): boolean {
    const entry = this.#peers.get(peer);
    return entry === undefined || entry.until <= this.#clock();
  }

  /** Records a failed round; returns how long to wait before the next one. */
  failed(peer: string): number {
    const rounds = (this.#peers.get(peer)?.rounds ?? 0) + 1;
    const waitMs = Math.min(this.#bounds.maxMs, this.#bounds.firstMs * 2 ** (rounds - 1));
    setNewest(this.#peers, peer, { rounds, until: this.#clock() + waitMs }, this.#bounds.maxPeers);
    return waitMs;
  }

  succeeded(peer: string): void {
    this.#peers.delete(peer);
  }

  get size(): number {
    return this.#peers.size;
  }
}
