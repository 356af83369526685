/**
 * Paces the in-process generations of one context the way llama-server's loop does: every
 * generation's next token in one decode batch, and the per-token JavaScript (SSE chunks, socket
 * writes) done while llama.cpp decodes, not between decodes.
 *
 * Three measured losses against llama-server on the tiny model (bench/llama-server-vs-inprocess.ts):
 * - node-llama-cpp samples each sequence in its own native job; the sequences whose token came
 *   first re-queued first and its dispatch loop decoded them at once, leaving three tokens per
 *   batch with four streams (the fourth always a step behind). `arrive()` holds a generation that
 *   has its token until every other one in the step has its own (or `maxWaitMs` passes), then
 *   releases them together one macrotask later, when that dispatch loop has returned.
 * - its default dispatch waits a whole event-loop turn; `dispatchSchedule` dispatches once the
 *   current promise jobs are done (`process.nextTick` queued from a promise job runs after them),
 *   so every generation released in one step is queued and decoded together without the wait.
 * - the text of a token was turned into an SSE chunk and written before the next decode was
 *   queued (≈ 0.3 ms a token, serial with llama.cpp); `deliver()` hands it over in a later
 *   macrotask, after the next decode has started on llama.cpp's thread.
 */
export class TokenSteps {
  readonly #maxWaitMs: number;
  #members = 0;
  #waiting: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  #pending: (() => void)[] = [];
  #releasing = false;

  constructor(maxWaitMs = 2) {
    this.#maxWaitMs = maxWaitMs;
  }

  /** node-llama-cpp's `batching.dispatchSchedule`. */
  readonly dispatchSchedule = (dispatch: () => void): void => {
    process.nextTick(dispatch);
  };

  /** A generation starts stepping with the others; `leave()` when it stops, whatever the reason. */
  join(): void {
    this.#members++;
  }

  leave(): void {
    this.#members = Math.max(0, this.#members - 1);
    if (this.#waiting.length > 0 && this.#waiting.length >= this.#members) this.#release();
  }

  /** Resolves when every member has its token for this step, or after the bound. */
  arrive(): Promise<void> {
    if (this.#members <= 1 && this.#waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      if (this.#waiting.length >= this.#members) this.#release();
      else this.#timer ??= setTimeout(() => this.#release(), this.#maxWaitMs);
    });
  }

  /** Runs `work` (a token's output) after the next decode is queued; in order; `flush()` runs it now. */
  deliver(work: () => void): void {
    if (this.#pending.length === 0) setImmediate(this.#flushUnlessGathering);
    this.#pending.push(work);
  }

  flush(): void {
    const pending = this.#pending;
    this.#pending = [];
    for (const work of pending) work();
  }

  /** While a step gathers, the next decode is not queued yet: the release flushes instead. */
  readonly #flushUnlessGathering = (): void => {
    if (this.#waiting.length === 0 && !this.#releasing) this.flush();
  };

  #release(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiting = this.#waiting;
    this.#waiting = [];
    this.#releasing = true;
    setImmediate(() => {
      this.#releasing = false;
      for (const resolve of waiting) resolve();
      // A turn later: the released generations' next decode is on llama.cpp's thread by then.
      if (this.#pending.length > 0) setImmediate(this.#flushUnlessGathering);
    });
  }
}
