import { UpstreamError, UpstreamTimeoutError } from '../errors.ts';

/** What a remote host can make this node hold or wait for (issue #15 finding 3). */
export interface AnswerBounds {
  /** Largest non-streamed answer body; a streamed one flows to the client with backpressure. */
  maxAnswerBytes: number;
  /** From sending the request to the answer's first body byte (prompt processing included). */
  firstByteTimeoutMs: number;
  /** Between two pieces of an answer once its first body byte came. */
  idleTimeoutMs: number;
}

export const DEFAULT_ANSWER_BOUNDS: AnswerBounds = {
  maxAnswerBytes: 32 * 1024 * 1024,
  // A long prompt on a CPU host, or a whole non-streamed answer, can take minutes.
  firstByteTimeoutMs: 300_000,
  idleTimeoutMs: 120_000,
};

export class AnswerTooLargeError extends UpstreamError {
  constructor(limit: number) {
    super(`The host's answer exceeds this node's limit of ${limit} bytes`, 'answer_too_large');
  }
}

/**
 * One watchdog per exchange: first the first-byte deadline (armed at send), then the idle
 * deadline, re-armed by every body chunk. When it fires it calls `onExpire` (which aborts the
 * stream) and `error()` says why, so the failure is a typed timeout, not a stream reset.
 */
export class AnswerWatchdog {
  readonly #bounds: AnswerBounds;
  readonly #onExpire: (error: UpstreamTimeoutError) => void;
  #timer: NodeJS.Timeout | undefined;
  #expired: UpstreamTimeoutError | undefined;

  constructor(bounds: AnswerBounds, onExpire: (error: UpstreamTimeoutError) => void) {
    this.#bounds = bounds;
    this.#onExpire = onExpire;
    this.#arm(bounds.firstByteTimeoutMs, 'the host sent no answer within');
  }

  /** The timeout that ended the exchange, if one did. */
  error(): UpstreamTimeoutError | undefined {
    return this.#expired;
  }

  /** A body chunk was taken: from now on only the idle deadline applies. */
  progress(): void {
    if (this.#expired) return;
    this.#arm(this.#bounds.idleTimeoutMs, 'the host stalled mid-answer for');
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number, what: string): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#expired = new UpstreamTimeoutError(`${what} ${Math.round(ms / 1000)} s`);
      this.#onExpire(this.#expired);
    }, ms);
    this.#timer.unref();
  }
}

/**
 * The answer's body under the watchdog, and capped at `maxBytes` when the caller will buffer it
 * (a non-streamed answer).
 */
export async function* boundedBody(
  source: AsyncIterable<Uint8Array>,
  watchdog: AnswerWatchdog,
  maxBytes: number,
): AsyncGenerator<Uint8Array> {
  let total = 0;
  for await (const chunk of source) {
    if (chunk.byteLength === 0) continue;
    total += chunk.byteLength;
    if (total > maxBytes) throw new AnswerTooLargeError(maxBytes);
    // While our own client holds the chunk (backpressure) the host is not the one waiting.
    watchdog.stop();
    yield chunk;
    watchdog.progress();
  }
}
