/**
 * Backpressure: when every host of a model is full, a request waits here (first come, first
 * served per model) instead of piling onto a host, until a slot frees or its deadline passes.
 * Beyond the deadline, or when too many already wait, the answer is 429 with Retry-After.
 */
import { AllHostsBusyError } from '../errors.ts';

export interface CapacityQueueOptions {
  /** Requests allowed to wait at once, all models together. Default 256. */
  maxWaiting?: number;
  /** How long one request may wait. Default 30 s. */
  timeoutMs?: number;
  /** Re-check this often while anything waits (a pass-over ending frees a host silently). */
  recheckMs?: number;
}

interface Waiter {
  /** Takes a place and returns it when one is free now, else undefined. Synchronous. */
  take(): unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  cleanup(): void;
}

export class CapacityQueue {
  readonly #maxWaiting: number;
  readonly #timeoutMs: number;
  readonly #recheckMs: number;
  readonly #queues = new Map<string, Waiter[]>();
  #waiting = 0;
  #notifying = false;
  #again = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: CapacityQueueOptions = {}) {
    this.#maxWaiting = options.maxWaiting ?? 256;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#recheckMs = options.recheckMs ?? 250;
  }

  get waiting(): number {
    return this.#waiting;
  }

  waitingFor(model: string): number {
    return this.#queues.get(model)?.length ?? 0;
  }

  /**
   * `take` runs now (unless others already wait for this model) and again whenever capacity may
   * have freed; the first value it returns ends the wait.
   */
  acquire<T>(model: string, take: () => T | undefined, signal: AbortSignal): Promise<T> {
    const queue = this.#queues.get(model);
    if (queue === undefined || queue.length === 0) {
      const now = take();
      if (now !== undefined) return Promise.resolve(now);
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#waiting >= this.#maxWaiting) {
      return Promise.reject(
        new AllHostsBusyError(
          `Every host of '${model}' is busy and ${this.#waiting} requests already wait`,
          this.#retryAfter(),
        ),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#remove(model, waiter);
        reject(
          new AllHostsBusyError(
            `Every host of '${model}' stayed busy for ${Math.round(this.#timeoutMs / 1000)} s`,
            this.#retryAfter(),
          ),
        );
      }, this.#timeoutMs);
      const onAbort = () => {
        this.#remove(model, waiter);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        take,
        resolve: resolve as (value: unknown) => void,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const list = this.#queues.get(model) ?? [];
      list.push(waiter);
      this.#queues.set(model, list);
      this.#waiting++;
      this.#schedule();
    });
  }

  /**
   * Capacity may have freed somewhere: serve waiters in order while their `take` succeeds. A
   * `take` that itself causes a notify (taking a place is a load change) is not re-entered: the
   * pass runs again once this one ends.
   */
  notify(): void {
    if (this.#notifying) {
      this.#again = true;
      return;
    }
    this.#notifying = true;
    try {
      do {
        this.#again = false;
        this.#serve();
      } while (this.#again);
    } finally {
      this.#notifying = false;
    }
  }

  #serve(): void {
    for (const [model, list] of this.#queues) {
      while (list.length > 0) {
        const head = list[0]!;
        let value: unknown;
        try {
          value = head.take();
        } catch (error) {
          this.#remove(model, head);
          head.reject(error);
          continue;
        }
        if (value === undefined) break;
        this.#remove(model, head);
        head.resolve(value);
      }
    }
  }

  /** Fails every waiter (node stopping). */
  close(): void {
    for (const [model, list] of this.#queues) {
      for (const waiter of [...list]) {
        this.#remove(model, waiter);
        waiter.reject(new AllHostsBusyError('This node is shutting down', 1));
      }
    }
  }

  #remove(model: string, waiter: Waiter): void {
    const list = this.#queues.get(model);
    const i = list?.indexOf(waiter) ?? -1;
    if (i === -1) return;
    list!.splice(i, 1);
    if (list!.length === 0) this.#queues.delete(model);
    this.#waiting--;
    waiter.cleanup();
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      this.notify();
      if (this.#waiting === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    }, this.#recheckMs);
    this.#timer.unref();
  }

  /** A hint, not a promise: about how long the current backlog takes to clear, 1 to 30 s. */
  #retryAfter(): number {
    return Math.min(30, Math.max(1, Math.ceil(this.#timeoutMs / 1000 / 4)));
  }
}
