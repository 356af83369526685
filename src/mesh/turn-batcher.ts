/**
 * Receives one batch: the chunks in write order and their total size. The receiver decides how
 * to join them (a sealer copies them straight into its frame; a plain sender concatenates), so
 * a batch is copied once, not once here and again downstream.
 */
export type BatchSender = (chunks: readonly Uint8Array[], byteLength: number) => void | Promise<void>;

/** Joins a batch into one buffer (no copy for a single chunk). */
export function joinBatch(chunks: readonly Uint8Array[], byteLength: number): Uint8Array {
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, byteLength);
}

/** Bytes queued in one event-loop turn before they are sent without waiting for its end. */
const MAX_BATCH_BYTES = 64 * 1024;

/**
 * Collects chunks written in one event-loop turn and hands them on as one (at setImmediate, or
 * at 64 KiB), in order, one send at a time. Everything per message on the mesh has a fixed cost
 * (a sealed E2E frame, a yamux frame, a Noise message, socket writes, a window update back),
 * while backends deliver an answer in many small pieces that are often ready together; a
 * streamed token is never held back past the current turn.
 */
export class TurnBatcher {
  readonly #send: BatchSender;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #scheduled = false;
  #sending: Promise<void> = Promise.resolve();
  #error: Error | undefined;

  constructor(send: BatchSender) {
    this.#send = send;
  }

  /** Queues `chunk`; resolves at once unless the batch is full (then when it was sent). */
  write(chunk: Uint8Array): Promise<void> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (chunk.byteLength === 0) return Promise.resolve();
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.byteLength;
    if (this.#pendingBytes >= MAX_BATCH_BYTES) return this.flush();
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.flush().catch(() => undefined);
      });
    }
    return Promise.resolve();
  }

  /** Sends what is queued, after any send in progress; rejects once a send has failed. */
  flush(): Promise<void> {
    this.#sending = this.#sending.then(() => this.#sendPending());
    return this.#sending;
  }

  discard(): void {
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  async #sendPending(): Promise<void> {
    if (this.#error !== undefined) throw this.#error;
    if (this.#pending.length === 0) return;
    const chunks = this.#pending;
    const byteLength = this.#pendingBytes;
    this.discard();
    try {
      await this.#send(chunks, byteLength);
    } catch (error) {
      this.#error = error instanceof Error ? error : new Error(String(error));
      throw this.#error;
    }
  }
}
