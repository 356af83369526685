/**
 * The encrypted response stream (SPEC §5):
 *   header = 0xE1 || host's raw 32-byte inference public key
 *   frame  = u32le(len) || nonce(24) || crypto_box(payload, nonce, sender_ephemeral_pk, host_sk)
 *   payload = type(1) || seq(u64 BE) || data;  type 0x00 data, 0x01 end, 0x02 error
 * Each frame is sealed and opened on its own, so a streamed answer is never buffered; seq and the
 * single terminal end frame make reordering, duplication, truncation and tampering detectable.
 * Frames use the session's precomputed box key (crypto_box_easy_afternm): the same bytes as
 * crypto_box_easy, without one X25519 scalar multiplication per frame.
 */

import { bufferView } from '../encoding/bytes.ts';
import { E2E_MAGIC } from './envelope.ts';
import { E2EError, E2ERemoteError } from './errors.ts';
import type { HostSession, SenderSession } from './sessions.ts';
import {
  boxOpenAfterNmInto,
  boxSealAfterNmInto,
  bytesEqual,
  MAC_BYTES,
  NONCE_BYTES,
  PUBLIC_KEY_BYTES,
  randomNonce,
} from './sodium.ts';

export const FRAME_TYPE_DATA = 0x00;
export const FRAME_TYPE_END = 0x01;
export const FRAME_TYPE_ERROR = 0x02;
export const RESPONSE_HEADER_BYTES = 1 + PUBLIC_KEY_BYTES;
export const FRAME_LENGTH_BYTES = 4;
export const PAYLOAD_HEADER_BYTES = 1 + 8;
/** Largest allowed value of the length prefix (nonce + box). */
export const MAX_FRAME_LENGTH = 16 * 1024 * 1024;
/** Smallest allowed length prefix: a nonce, a tag and an empty payload's type + seq. */
export const MIN_FRAME_LENGTH = NONCE_BYTES + MAC_BYTES + PAYLOAD_HEADER_BYTES;
/** Data bytes per frame the sealer emits before splitting a chunk. */
export const DEFAULT_MAX_FRAME_DATA_BYTES = 1024 * 1024;
export const MAX_FRAME_DATA_BYTES = MAX_FRAME_LENGTH - MIN_FRAME_LENGTH;
/** Error frames carry a short message; longer ones are cut. */
export const MAX_ERROR_MESSAGE_BYTES = 1024;

const TWO_32 = 2 ** 32;

export interface ResponseSealerOptions {
  maxFrameDataBytes?: number;
}

/**
 * Host side: turns backend response bytes into frames, one call at a time. Each method returns
 * the bytes to write next (the header is prepended to the first output if header() was not
 * called). end() or error() finishes the stream and frees the session's secret.
 */
export class ResponseSealer {
  readonly #session: HostSession;
  readonly #maxFrameData: number;
  #seq = 0;
  #headerSent = false;
  #finished = false;

  constructor(session: HostSession, options: ResponseSealerOptions = {}) {
    if (session.disposed) throw new E2EError('closed', 'host session was already disposed');
    const maxFrameData = options.maxFrameDataBytes ?? DEFAULT_MAX_FRAME_DATA_BYTES;
    if (!Number.isInteger(maxFrameData) || maxFrameData < 1 || maxFrameData > MAX_FRAME_DATA_BYTES) {
      throw new RangeError(`maxFrameDataBytes must be an integer in 1..${MAX_FRAME_DATA_BYTES}`);
    }
    this.#session = session;
    this.#maxFrameData = maxFrameData;
  }

  get finished(): boolean {
    return this.#finished;
  }

  header(): Uint8Array {
    this.#assertOpen();
    if (this.#headerSent) return new Uint8Array(0);
    this.#headerSent = true;
    const out = Buffer.allocUnsafe(RESPONSE_HEADER_BYTES);
    out[0] = E2E_MAGIC;
    out.set(this.#session.hostPublicKey, 1);
    return out;
  }

  /**
   * Frames `data`, one buffer or several in order (a batch is copied straight into its frame, not
   * joined first); split into several frames above maxFrameDataBytes. Empty input → no frame.
   */
  data(data: Uint8Array | readonly Uint8Array[]): Uint8Array {
    this.#assertOpen();
    const chunks = data instanceof Uint8Array ? [data] : data;
    let total = 0;
    for (const chunk of chunks) total += chunk.byteLength;
    const sizes: number[] = [];
    for (let left = total; left > 0; left -= this.#maxFrameData)
      sizes.push(Math.min(left, this.#maxFrameData));
    return this.#emit(FRAME_TYPE_DATA, sizes, new ChunkCursor(chunks));
  }

  end(): Uint8Array {
    this.#assertOpen();
    const out = this.#emit(FRAME_TYPE_END, [0], new ChunkCursor([]));
    this.#finish();
    return out;
  }

  /** Ends the stream with an error the sender surfaces as E2ERemoteError. Keep messages free of user data. */
  error(message: string): Uint8Array {
    this.#assertOpen();
    const text = Buffer.from(String(message), 'utf8');
    const cut = text.subarray(0, MAX_ERROR_MESSAGE_BYTES);
    const out = this.#emit(FRAME_TYPE_ERROR, [cut.byteLength], new ChunkCursor([cut]));
    this.#finish();
    return out;
  }

  /** Frames of `sizes` data bytes each, filled from `source` in order, in one buffer. */
  #emit(type: number, sizes: readonly number[], source: ChunkCursor): Uint8Array {
    const prefix = this.#headerSent ? 0 : RESPONSE_HEADER_BYTES;
    let total = prefix;
    for (const size of sizes) total += FRAME_LENGTH_BYTES + MIN_FRAME_LENGTH + size;
    if (total === 0) return new Uint8Array(0);
    const out = Buffer.allocUnsafe(total);
    let offset = 0;
    if (prefix > 0) {
      out.set(this.header(), 0);
      offset = prefix;
    }
    for (const size of sizes) offset = this.#frameInto(out, offset, type, size, source);
    return out;
  }

  #frameInto(out: Buffer, offset: number, type: number, size: number, source: ChunkCursor): number {
    const length = MIN_FRAME_LENGTH + size;
    out.writeUInt32LE(length, offset);
    const nonce = out.subarray(offset + FRAME_LENGTH_BYTES, offset + FRAME_LENGTH_BYTES + NONCE_BYTES);
    randomNonce(nonce);
    // The payload is assembled where its ciphertext goes and sealed in place: no plaintext copy
    // is left behind and nothing is allocated per frame.
    const boxStart = offset + FRAME_LENGTH_BYTES + NONCE_BYTES;
    const boxEnd = boxStart + MAC_BYTES + PAYLOAD_HEADER_BYTES + size;
    const payload = out.subarray(boxStart + MAC_BYTES, boxEnd);
    payload[0] = type;
    payload.writeUInt32BE(Math.floor(this.#seq / TWO_32), 1);
    payload.writeUInt32BE(this.#seq % TWO_32, 5);
    source.copyInto(payload.subarray(PAYLOAD_HEADER_BYTES));
    boxSealAfterNmInto(out.subarray(boxStart, boxEnd), payload, nonce, this.#session.sharedKey);
    this.#seq += 1;
    return boxEnd;
  }

  #finish(): void {
    this.#finished = true;
    this.#session.dispose();
  }

  #assertOpen(): void {
    if (this.#finished) throw new E2EError('closed', 'response stream already finished');
    if (this.#session.disposed) throw new E2EError('closed', 'host session was disposed');
  }
}

/** Reads a list of chunks front to back into target buffers, across chunk boundaries. */
class ChunkCursor {
  readonly #chunks: readonly Uint8Array[];
  #index = 0;
  #offset = 0;

  constructor(chunks: readonly Uint8Array[]) {
    this.#chunks = chunks;
  }

  /** Fills `target` completely with the next target.byteLength bytes (the caller counted them). */
  copyInto(target: Uint8Array): void {
    let filled = 0;
    while (filled < target.byteLength) {
      const chunk = this.#chunks[this.#index]!;
      const count = Math.min(target.byteLength - filled, chunk.byteLength - this.#offset);
      target.set(
        count === chunk.byteLength ? chunk : chunk.subarray(this.#offset, this.#offset + count),
        filled,
      );
      filled += count;
      this.#offset += count;
      if (this.#offset === chunk.byteLength) {
        this.#index += 1;
        this.#offset = 0;
      }
    }
  }
}

export interface ResponseOpenerOptions {
  /** Largest accepted frame length prefix (default and maximum 16 MiB). */
  maxFrameLength?: number;
}

/**
 * Sender side, incremental: push() bytes as they arrive and get back the decrypted data chunks
 * of every frame completed so far; finish() when the source ends. push() takes ownership of the
 * bytes: frames are decrypted where they lie, and the returned chunks are views into them. The
 * first failure is sticky: every later call rethrows it.
 */
export class ResponseOpener {
  readonly #session: SenderSession;
  readonly #maxFrameLength: number;
  #state: 'header' | 'frames' | 'ended' = 'header';
  #failure: E2EError | undefined;
  #queue: Uint8Array[] = [];
  #queueHead = 0; // bytes already consumed from #queue[0]
  #queued = 0;
  #expectedSeq = 0;

  constructor(session: SenderSession, options: ResponseOpenerOptions = {}) {
    if (session.disposed) throw new E2EError('closed', 'sender session was already disposed');
    const max = options.maxFrameLength ?? MAX_FRAME_LENGTH;
    if (!Number.isInteger(max) || max < MIN_FRAME_LENGTH || max > MAX_FRAME_LENGTH) {
      throw new RangeError(`maxFrameLength must be an integer in ${MIN_FRAME_LENGTH}..${MAX_FRAME_LENGTH}`);
    }
    this.#session = session;
    this.#maxFrameLength = max;
  }

  /** True once the end frame was read. */
  get ended(): boolean {
    return this.#state === 'ended';
  }

  push(bytes: Uint8Array): Uint8Array[] {
    if (this.#failure) throw this.#failure;
    try {
      return this.#push(bytes);
    } catch (error) {
      this.#failure =
        error instanceof E2EError
          ? error
          : new E2EError('bad_frame', 'response frame could not be processed');
      this.#queue = [];
      this.#queued = 0;
      throw this.#failure;
    }
  }

  /** Call when the source ended; throws unless exactly one end frame closed the stream. */
  finish(): void {
    if (this.#failure) throw this.#failure;
    if (this.#state === 'ended') return;
    this.#failure =
      this.#state === 'header'
        ? new E2EError('truncated', 'response ended before its header')
        : this.#queued > 0
          ? new E2EError('truncated', 'response ended inside a frame')
          : new E2EError('missing_end', 'response ended without an end frame');
    throw this.#failure;
  }

  #push(bytes: Uint8Array): Uint8Array[] {
    if (bytes.byteLength === 0) return [];
    if (this.ended) throw new E2EError('data_after_end', 'bytes after the end frame');
    this.#queue.push(bytes);
    this.#queued += bytes.byteLength;
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.#state === 'header') {
        if (this.#queued < RESPONSE_HEADER_BYTES) break;
        const header = this.#take(RESPONSE_HEADER_BYTES);
        if (header[0] !== E2E_MAGIC) throw new E2EError('bad_magic', 'response does not start with 0xE1');
        if (!bytesEqual(header.subarray(1), this.#session.hostPublicKey)) {
          throw new E2EError('key_mismatch', 'response comes from a different inference key than requested');
        }
        this.#state = 'frames';
        continue;
      }
      if (this.ended) {
        if (this.#queued > 0) throw new E2EError('data_after_end', 'bytes after the end frame');
        break;
      }
      if (this.#queued < FRAME_LENGTH_BYTES) break;
      const length = this.#peekU32LE();
      if (length > this.#maxFrameLength) throw new E2EError('frame_too_large', 'response frame is too large');
      if (length < MIN_FRAME_LENGTH) throw new E2EError('bad_frame', 'response frame is too short');
      if (this.#queued < FRAME_LENGTH_BYTES + length) break;
      this.#take(FRAME_LENGTH_BYTES);
      const data = this.#openFrame(this.#take(length));
      if (data && data.byteLength > 0) out.push(data);
    }
    return out;
  }

  /** Returns the frame's data (data frames), undefined for the end frame; throws otherwise. */
  #openFrame(frame: Uint8Array): Uint8Array | undefined {
    // Opened in place: the frame's bytes are ours (push() takes ownership), so no buffer is
    // allocated per frame. libsodium checks the tag before it writes anything.
    const box = frame.subarray(NONCE_BYTES);
    const payload = box.subarray(MAC_BYTES);
    const ok = boxOpenAfterNmInto(payload, box, frame.subarray(0, NONCE_BYTES), this.#session.sharedKey);
    if (!ok) throw new E2EError('decrypt_failed', 'response frame failed authentication');
    const type = payload[0];
    if (type !== FRAME_TYPE_DATA && type !== FRAME_TYPE_END && type !== FRAME_TYPE_ERROR) {
      throw new E2EError('bad_frame', `unknown response frame type ${type}`);
    }
    const seq = readU32BE(payload, 1) * TWO_32 + readU32BE(payload, 5);
    if (seq !== this.#expectedSeq) {
      throw new E2EError(
        'out_of_order',
        `response frame out of sequence (expected ${this.#expectedSeq}, got ${seq})`,
      );
    }
    this.#expectedSeq += 1;
    if (type === FRAME_TYPE_DATA) return payload.subarray(PAYLOAD_HEADER_BYTES);
    if (type === FRAME_TYPE_END) {
      if (payload.byteLength !== PAYLOAD_HEADER_BYTES)
        throw new E2EError('bad_frame', 'end frame carries data');
      this.#state = 'ended';
      return undefined;
    }
    throw new E2ERemoteError(sanitize(payload.subarray(PAYLOAD_HEADER_BYTES)));
  }

  #peekU32LE(): number {
    const first = this.#queue[0]!;
    if (first.byteLength - this.#queueHead >= 4) {
      const at = this.#queueHead;
      return (first[at]! | (first[at + 1]! << 8) | (first[at + 2]! << 16)) + first[at + 3]! * 2 ** 24;
    }
    const saved = { queue: this.#queue.slice(), head: this.#queueHead, queued: this.#queued };
    const bytes = this.#take(4);
    this.#queue = saved.queue;
    this.#queueHead = saved.head;
    this.#queued = saved.queued;
    return (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16)) + bytes[3]! * 2 ** 24;
  }

  /** Removes exactly n queued bytes (n ≤ queued), copying only when they span chunks. */
  #take(n: number): Uint8Array {
    const first = this.#queue[0]!;
    const available = first.byteLength - this.#queueHead;
    if (available >= n) {
      const out = first.subarray(this.#queueHead, this.#queueHead + n);
      this.#advance(n);
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#queue[0]!;
      const count = Math.min(n - filled, chunk.byteLength - this.#queueHead);
      out.set(chunk.subarray(this.#queueHead, this.#queueHead + count), filled);
      filled += count;
      this.#advance(count);
    }
    return out;
  }

  #advance(n: number): void {
    this.#queueHead += n;
    this.#queued -= n;
    if (this.#queueHead === this.#queue[0]!.byteLength) {
      this.#queue.shift();
      this.#queueHead = 0;
    }
  }
}

export interface OpenResponseOptions extends ResponseOpenerOptions {
  /** Free the session's secret when the stream finishes or fails (default true: it is single-use). */
  disposeSession?: boolean;
}

/**
 * Decrypts a response stream, yielding each data frame's bytes as soon as it is complete (decrypted
 * in place: the source's chunks must not be used elsewhere). The header key is checked against
 * session.hostPublicKey before anything is yielded. Throws E2EError on any violation, including a
 * source that ends without the end frame.
 */
export async function* openResponse(
  source: AsyncIterable<Uint8Array>,
  session: SenderSession,
  options: OpenResponseOptions = {},
): AsyncGenerator<Uint8Array, void, undefined> {
  try {
    const opener = new ResponseOpener(session, options);
    for await (const chunk of source) {
      for (const data of opener.push(chunk)) yield data;
    }
    opener.finish();
  } finally {
    if (options.disposeSession !== false) session.dispose();
  }
}

function readU32BE(bytes: Uint8Array, at: number): number {
  return bytes[at]! * 2 ** 24 + ((bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!);
}

/** The host's error text, decoded leniently, control characters removed, length-capped. */
function sanitize(bytes: Uint8Array): string {
  const text = bufferView(bytes).toString('utf8');
  return (
    text
      .replace(/[\s\u0000-\u001f\u007f]+/g, ' ')
      .slice(0, 512)
      .trim() || 'unspecified error'
  );
}
