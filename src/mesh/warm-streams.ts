/**
 * Keeps a few already-negotiated outbound streams per peer, so a request skips the
 * multistream-select round trip and the peer-store writes both ends do for a new stream
 * (together most of a remote hop's fixed cost on a fast link). Streams are opened only to
 * peers that were just used, refilled once a request's stream has ended (so the refill does not
 * compete with the request it would speed up), and closed when a peer goes unused for
 * `idleMs`: an idle mesh keeps no extra streams open. Refills wait until a peer is down to
 * `refillAt` streams and then open several at once: their opens and the host's answers travel
 * together, one write and one wake-up each way, instead of one round trip per request.
 */
export interface WarmStreamPoolOptions<S> {
  /** Streams kept ready per recently used peer. */
  size: number;
  /** A peer is topped up to `size` once it has this many or fewer (ready or opening); default 0. */
  refillAt?: number;
  /** A peer's warm streams are closed after this long without a take. */
  idleMs: number;
  open(peer: string): Promise<S>;
  /** False once the stream (or its connection) has closed, been reset, or half-closed. */
  usable(stream: S): boolean;
  /** Ends a stream that will never carry a request. */
  discard(stream: S): void;
  onOpenError?(peer: string, error: unknown): void;
  clock?: () => number;
}

interface PeerPool<S> {
  ready: S[];
  opening: number;
  lastTakeMs: number;
}

export class WarmStreamPool<S> {
  readonly #options: WarmStreamPoolOptions<S>;
  readonly #clock: () => number;
  readonly #peers = new Map<string, PeerPool<S>>();
  readonly #sweeper: NodeJS.Timeout;
  #stopped = false;

  constructor(options: WarmStreamPoolOptions<S>) {
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
    this.#sweeper = setInterval(() => this.sweep(), Math.max(1_000, options.idleMs / 2));
    this.#sweeper.unref();
  }

  /** A ready stream to `peer`, or undefined: the caller opens one itself. */
  take(peer: string): S | undefined {
    if (this.#stopped) return undefined;
    const pool = this.#peers.get(peer) ?? { ready: [], opening: 0, lastTakeMs: 0 };
    this.#peers.set(peer, pool);
    pool.lastTakeMs = this.#clock();
    for (let stream = pool.ready.shift(); stream !== undefined; stream = pool.ready.shift()) {
      if (this.#options.usable(stream)) return stream;
      this.#options.discard(stream);
    }
    return undefined;
  }

  /** Tops up a peer that was taken from since its last idle sweep, once it runs low. */
  refill(peer: string): void {
    const pool = this.#peers.get(peer);
    if (pool === undefined || this.#stopped) return;
    if (pool.ready.length + pool.opening > (this.#options.refillAt ?? 0)) return;
    while (pool.ready.length + pool.opening < this.#options.size) {
      pool.opening += 1;
      this.#options.open(peer).then(
        (stream) => {
          pool.opening -= 1;
          // Dropped, stopped or swept while opening: nobody will take it.
          if (this.#stopped || this.#peers.get(peer) !== pool) this.#options.discard(stream);
          else pool.ready.push(stream);
        },
        (error: unknown) => {
          pool.opening -= 1;
          this.#options.onOpenError?.(peer, error);
        },
      );
    }
  }

  /** The peer's connection is gone: its warm streams went with it. */
  drop(peer: string): void {
    const pool = this.#peers.get(peer);
    if (pool === undefined) return;
    this.#peers.delete(peer);
    for (const stream of pool.ready.splice(0)) this.#options.discard(stream);
  }

  /** Closes idle peers' streams; runs on a timer, public so tests can drive it. */
  sweep(): void {
    const cutoff = this.#clock() - this.#options.idleMs;
    for (const [peer, pool] of this.#peers) {
      if (pool.lastTakeMs <= cutoff) this.drop(peer);
    }
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#sweeper);
    for (const peer of [...this.#peers.keys()]) this.drop(peer);
  }

  /** Ready streams held for `peer` (status, tests). */
  size(peer: string): number {
    return this.#peers.get(peer)?.ready.length ?? 0;
  }
}
