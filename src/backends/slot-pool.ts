/**
 * A fixed set of slots (context sequences) handed out one request at a time, with a bounded
 * FIFO of waiters. When the queue is full, acquire fails at once with NoCapacityError rather
 * than letting latency grow without limit.
 */
import { NoCapacityError } from '../errors.ts';

interface Waiter<T> {
  resolve(slot: T): void;
  reject(err: unknown): void;
  signal: AbortSignal;
  onAbort(): void;
}

export class SlotPool<T> {
  readonly #free: T[];
  readonly #waiters: Waiter<T>[] = [];
  readonly #maxWaiting: number;
  #closed = false;

  constructor(slots: T[], maxWaiting: number) {
    this.#free = [...slots];
    this.#maxWaiting = maxWaiting;
  }

  get available(): number {
    return this.#free.length;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  acquire(signal: AbortSignal): Promise<T> {
    if (this.#closed)
      return Promise.reject(new NoCapacityError('The backend is shutting down', 'backend_stopped'));
    if (signal.aborted) return Promise.reject(signal.reason);
    const slot = this.#free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    if (this.#waiters.length >= this.#maxWaiting) {
      return Promise.reject(new NoCapacityError('All inference slots are busy and the queue is full'));
    }
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.#waiters.indexOf(waiter);
          if (i !== -1) this.#waiters.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  release(slot: T): void {
    const next = this.#waiters.shift();
    if (next) {
      next.signal.removeEventListener('abort', next.onAbort);
      next.resolve(slot);
    } else this.#free.push(slot);
  }

  /** Rejects every waiter; later acquires fail. Slots already out stay with their holders. */
  close(): void {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) {
      w.signal.removeEventListener('abort', w.onAbort);
      w.reject(new NoCapacityError('The backend is shutting down', 'backend_stopped'));
    }
  }
}
