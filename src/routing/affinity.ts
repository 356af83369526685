/**
 * Conversation affinity: the host that answered a conversation holds its prompt in cache, so the
 * next turn (the same leading messages plus new ones) runs cheaper there. Conversations are
 * known by a chain of SHA-256 digests over their messages, never by their text; nothing here is
 * logged. The table is bounded and entries expire.
 */
import { createHash } from 'node:crypto';

export interface AffinityOptions {
  /** Conversations remembered. Default 10 000. */
  maxEntries?: number;
  /** Forget a conversation not continued for this long. Default 10 min. */
  ttlMs?: number;
  clock?: () => number;
}

/** How many shorter prefixes a lookup tries: turns usually add an answer and a question. */
const LOOKBACK = 4;

/**
 * Digests of every prefix of a message list: `keys[i]` covers messages 0..i, bound to the model
 * (the same words to another model are another cache).
 */
export function conversationKeys(model: string, messages: readonly unknown[]): string[] {
  const keys: string[] = [];
  let chain = createHash('sha256').update(`mesh-llm-affinity-v1\u0000${model}`).digest();
  for (const message of messages) {
    const digest = createHash('sha256')
      .update(JSON.stringify(message) ?? 'null')
      .digest();
    chain = createHash('sha256').update(chain).update(digest).digest();
    keys.push(chain.toString('base64'));
  }
  return keys;
}

export class AffinityTable {
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #clock: () => number;
  /** Insertion order is recency order (refreshed entries move to the end). */
  readonly #entries = new Map<string, { host: string; untilMs: number }>();

  constructor(options: AffinityOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#ttlMs = options.ttlMs ?? 10 * 60_000;
    this.#clock = options.clock ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The host that served the longest earlier turn of this conversation, if remembered. */
  lookup(keys: readonly string[]): string | undefined {
    const now = this.#clock();
    for (let i = keys.length - 2; i >= Math.max(0, keys.length - 1 - LOOKBACK); i--) {
      const entry = this.#entries.get(keys[i]!);
      if (entry === undefined) continue;
      if (entry.untilMs <= now) {
        this.#entries.delete(keys[i]!);
        continue;
      }
      return entry.host;
    }
    return undefined;
  }

  /** `host` served the conversation whose full message list gives `keys`. */
  remember(keys: readonly string[], host: string): void {
    const last = keys.at(-1);
    if (last === undefined) return;
    const now = this.#clock();
    this.#entries.delete(last);
    this.#entries.set(last, { host, untilMs: now + this.#ttlMs });
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && entry.untilMs > now) break;
      this.#entries.delete(key);
    }
  }

  /** A host left: its entries point nowhere. */
  forgetHost(host: string): void {
    for (const [key, entry] of this.#entries) if (entry.host === host) this.#entries.delete(key);
  }
}
