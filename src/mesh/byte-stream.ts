import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import { joinBatch, TurnBatcher } from './turn-batcher.ts';
import type { ByteStream } from './types.ts';

/** Pause the remote (stop yamux window updates) once this much is queued unread. */
const READ_HIGH_WATER = 1024 * 1024;
const READ_LOW_WATER = 256 * 1024;

export class StreamClosedError extends Error {
  constructor(message = 'stream closed') {
    super(message);
    this.name = 'StreamClosedError';
  }
}

export type TapFn = (direction: 'in' | 'out', bytes: Uint8Array) => void;

/**
 * Wraps a libp2p 3 Stream (event based: `send`/`message`/`drain`) as a ByteStream.
 * Writes made in the same event-loop turn go out as one muxer frame (TurnBatcher); writes
 * wait for `drain` when the muxer is full; reads pause the remote when the consumer falls
 * behind, so neither side buffers without bound.
 */
export function toByteStream(stream: Stream, tap?: TapFn): ByteStream {
  const reader = new PausingReader(stream, tap);
  const writer = new TurnBatcher(async (chunks, byteLength) => {
    if (!stream.send(joinBatch(chunks, byteLength))) await drained(stream);
  });
  return {
    source: reader,
    async write(chunk: Uint8Array): Promise<void> {
      if (chunk.byteLength === 0) return;
      if (stream.writeStatus !== 'writable') {
        throw new StreamClosedError(`cannot write: stream is ${stream.status}/${stream.writeStatus}`);
      }
      tap?.('out', chunk);
      await writer.write(chunk);
    },
    async closeWrite(): Promise<void> {
      await writer.flush();
      if (stream.writeStatus === 'closed' || stream.writeStatus === 'closing') return;
      await stream.close();
    },
    abort(error: Error): void {
      writer.discard();
      stream.abort(error);
    },
  };
}

/**
 * Resolves at the stream's next 'drain', rejects if it closes first. Stands in for
 * stream.onDrain(): a stream that ever waited there builds a StreamClosedError (a stack capture,
 * ~30 µs) when it closes, even though nothing is waiting any more — on every busy request.
 */
function drained(stream: Stream): Promise<void> {
  if (!stream.writableNeedsDrain) return Promise.resolve();
  if (stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset') {
    // Its 'close' has been dispatched already: waiting for it would hang.
    return Promise.reject(new StreamClosedError(`cannot write: stream is ${stream.status}`));
  }
  return new Promise<void>((resolve, reject) => {
    const onDrain = () => {
      detach();
      resolve();
    };
    const onClose = (evt: StreamCloseEvent) => {
      detach();
      reject(evt.error ?? new StreamClosedError('stream closed while waiting to write'));
    };
    const detach = () => {
      stream.removeEventListener('drain', onDrain);
      stream.removeEventListener('close', onClose);
    };
    stream.addEventListener('drain', onDrain);
    stream.addEventListener('close', onClose);
  });
}

class PausingReader implements AsyncIterable<Uint8Array> {
  private readonly stream: Stream;
  private readonly tap: TapFn | undefined;
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  private remoteEnded = false;
  private closed = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  private iterated = false;
  private readonly detach: () => void;

  constructor(stream: Stream, tap: TapFn | undefined) {
    this.stream = stream;
    this.tap = tap;
    // Listen from the start: a stream with no 'message' listener neither pauses the
    // remote nor stops it, and would be reset once 4 MiB pile up unread.
    const onMessage = (evt: StreamMessageEvent) => {
      const bytes = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray();
      if (bytes.byteLength === 0) return;
      this.queue.push(bytes);
      this.queued += bytes.byteLength;
      if (this.queued > READ_HIGH_WATER && this.stream.readStatus === 'readable') {
        try {
          this.stream.pause();
        } catch {
          // Already closing: nothing to pause.
        }
      }
      this.notify();
    };
    const onRemoteCloseWrite = () => {
      this.remoteEnded = true;
      this.notify();
    };
    const onClose = (evt: StreamCloseEvent) => {
      if (evt.error !== undefined) this.error = evt.error;
      // Closed before the remote ended its side: the connection went away (a reset, not an end).
      else if (!this.remoteEnded)
        this.error = new StreamClosedError('the connection closed before the remote finished');
      this.closed = true;
      this.notify();
    };
    stream.addEventListener('message', onMessage);
    stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite);
    stream.addEventListener('close', onClose);
    if (stream.remoteWriteStatus === 'closed') this.remoteEnded = true;
    if (stream.status === 'reset' || stream.status === 'aborted') {
      this.error = new StreamClosedError(`stream was ${stream.status} before it was read`);
    } else if (stream.status !== 'open') {
      this.closed = true;
    }
    this.detach = () => {
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite);
      stream.removeEventListener('close', onClose);
    };
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private maybeResume(): void {
    if (this.stream.readStatus === 'paused' && this.queued < READ_LOW_WATER) {
      try {
        // Synchronously re-dispatches what libp2p buffered while paused.
        this.stream.resume();
      } catch {
        // Closing: the buffered bytes are gone with it.
      }
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterated) throw new Error('a ByteStream source can only be read once');
    this.iterated = true;
    return {
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        for (;;) {
          const chunk = this.queue.shift();
          if (chunk !== undefined) {
            this.queued -= chunk.byteLength;
            this.maybeResume();
            this.tap?.('in', chunk);
            return { value: chunk, done: false };
          }
          if (this.error !== undefined) {
            this.detach();
            throw this.error;
          }
          if (this.stream.readStatus === 'paused') {
            this.maybeResume();
            if (this.queue.length > 0) continue;
          }
          if (this.remoteEnded || this.closed) {
            this.detach();
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => {
            this.wake = resolve;
          });
        }
      },
      return: async (): Promise<IteratorResult<Uint8Array>> => {
        this.detach();
        this.queue.length = 0;
        this.queued = 0;
        return { value: undefined, done: true };
      },
    };
  }
}

/**
 * Pipes two ByteStreams into each other, propagating half-close both ways;
 * an error on either side aborts both.
 */
export async function pipeBoth(a: ByteStream, b: ByteStream): Promise<void> {
  let failed = false;
  const fail = (err: unknown) => {
    if (failed) return;
    failed = true;
    const error = err instanceof Error ? err : new Error(String(err));
    a.abort(error);
    b.abort(error);
  };
  const pump = async (from: ByteStream, to: ByteStream) => {
    for await (const chunk of from.source) await to.write(chunk);
    await to.closeWrite();
  };
  await Promise.all([pump(a, b).catch(fail), pump(b, a).catch(fail)]);
}
