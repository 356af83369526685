/**
 * Turns generated tokens into text pieces as they arrive, holding back only what must be held:
 * up to 3 tokens while they form an incomplete UTF-8 character, and a tail of text that could
 * be the start of a stop string. Stop strings are cut out of the output.
 */
export type Detokenize = (tokens: readonly number[], lastTokens: readonly number[]) => string;

const MAX_HELD_TOKENS = 4;
const CONTEXT_TOKENS = 8;

export class TokenTextStream {
  readonly #detokenize: Detokenize;
  readonly #stops: string[];
  #pending: number[] = [];
  #history: number[] = [];
  #text = '';
  #stopped = false;

  constructor(detokenize: Detokenize, stops: readonly string[] = []) {
    this.#detokenize = detokenize;
    this.#stops = stops.filter((s) => s.length > 0);
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Adds one token; returns the text that can be emitted now (possibly ''). */
  push(token: number): string {
    if (this.#stopped) return '';
    this.#pending.push(token);
    const text = this.#detokenize(this.#pending, this.#history);
    // U+FFFD at the end usually means a multi-byte character split across byte tokens.
    if (text.endsWith('\uFFFD') && this.#pending.length < MAX_HELD_TOKENS) return '';
    this.#commitTokens();
    return this.#scan(text, false);
  }

  /** Ends the stream: returns everything still held (minus any stop string). */
  flush(): string {
    if (this.#stopped) return '';
    const text = this.#pending.length > 0 ? this.#detokenize(this.#pending, this.#history) : '';
    this.#commitTokens();
    return this.#scan(text, true);
  }

  #commitTokens(): void {
    this.#history.push(...this.#pending);
    if (this.#history.length > CONTEXT_TOKENS) this.#history = this.#history.slice(-CONTEXT_TOKENS);
    this.#pending = [];
  }

  #scan(text: string, final: boolean): string {
    if (this.#stops.length === 0) return text;
    const buffer = this.#text + text;
    let cut = -1;
    for (const stop of this.#stops) {
      const at = buffer.indexOf(stop);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) {
      this.#stopped = true;
      this.#text = '';
      return buffer.slice(0, cut);
    }
    if (final) {
      this.#text = '';
      return buffer;
    }
    const hold = heldSuffixLength(buffer, this.#stops);
    this.#text = buffer.slice(buffer.length - hold);
    return buffer.slice(0, buffer.length - hold);
  }
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function heldSuffixLength(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const stop of stops) {
    for (let len = Math.min(stop.length - 1, text.length); len > best; len--) {
      if (text.endsWith(stop.slice(0, len))) {
        best = len;
        break;
      }
    }
  }
  return best;
}
