/**
 * Token buckets per key with a hard cap on the number of keys. libp2p's own RateLimiter keeps
 * a timer per key and no cap, so a peer choosing fresh keys (addresses, origins) would grow it
 * without bound; here the clock is injected (tests simulate hours) and memory is capped.
 */
export interface KeyedRateLimitOptions {
  /** Tokens a fresh key starts with (the most spent at once). */
  burst: number;
  /** Tokens regained per second. */
  perSecond: number;
  /** Keys remembered; past this, full buckets and then the least recently used ones go. */
  maxKeys: number;
  clock: () => number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

export class KeyedRateLimit {
  private readonly options: KeyedRateLimitOptions;
  private readonly buckets = new Map<string, Bucket>();

  constructor(options: KeyedRateLimitOptions) {
    this.options = options;
  }

  /** Spends one token of `key` if it has one. */
  take(key: string): boolean {
    const bucket = this.refill(key);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Whether `key` has a token now, without spending it. */
  has(key: string): boolean {
    return this.refill(key).tokens >= 1;
  }

  get size(): number {
    return this.buckets.size;
  }

  private refill(key: string): Bucket {
    const { burst, perSecond, clock } = this.options;
    const now = clock();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: burst, atMs: now };
      this.trim(key);
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.atMs) / 1000) * perSecond);
      bucket.atMs = now;
      // Most recently used last, so eviction takes the stalest.
      this.buckets.delete(key);
      this.buckets.set(key, bucket);
    }
    return bucket;
  }

  /** Makes room for `incoming`. */
  private trim(incoming: string): void {
    const { maxKeys, burst, perSecond, clock } = this.options;
    if (this.buckets.size < maxKeys || this.buckets.has(incoming)) return;
    const now = clock();
    // A bucket that has refilled holds no state worth keeping.
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.atMs) / 1000) * perSecond >= burst) this.buckets.delete(key);
    }
    for (const key of this.buckets.keys()) {
      if (this.buckets.size < maxKeys) break;
      this.buckets.delete(key);
    }
  }
}
