/**
 * A single-consumer async queue: a producer pushes chunks as they are made, the consumer
 * iterates them as they arrive. `onCancel` runs when the consumer stops early (break/return),
 * so a producer can stop work nobody will read.
 */
export class PushStream<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #ended = false;
  #error: unknown;
  #wake: (() => void) | undefined;
  readonly #onCancel: () => void;

  constructor(onCancel: () => void = () => {}) {
    this.#onCancel = onCancel;
  }

  push(item: T): void {
    if (this.#ended) return;
    this.#items.push(item);
    this.#notify();
  }

  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#notify();
  }

  /** Ends at once, dropping what the consumer has not read yet (it no longer wants it). */
  cancel(error?: unknown): void {
    if (this.#ended) return;
    this.#items.length = 0;
    this.end(error);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    let finished = false;
    try {
      while (true) {
        const item = this.#items.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (this.#ended) {
          finished = true;
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
    } finally {
      if (!finished) {
        this.#ended = true;
        this.#items.length = 0;
        this.#onCancel();
      }
    }
  }
}
