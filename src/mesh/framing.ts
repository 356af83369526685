import type { ByteStream } from './types.ts';

/** Gossip and attest frames: unsigned varint length prefix + payload, at most 8 MiB (SPEC §4). */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024;

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

export function encodeFrame(payload: Uint8Array): Uint8Array {
  if (payload.byteLength > MAX_FRAME_BYTES) throw new FrameError('frame exceeds 8 MiB');
  const prefix: number[] = [];
  let n = payload.byteLength;
  while (n >= 0x80) {
    prefix.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  prefix.push(n);
  const out = new Uint8Array(prefix.length + payload.byteLength);
  out.set(prefix, 0);
  out.set(payload, prefix.length);
  return out;
}

/**
 * Yields whole frames from a byte source; throws FrameError on a frame over `maxFrameBytes`
 * (default 8 MiB) or a truncated one.
 */
export async function* decodeFrames(
  source: AsyncIterable<Uint8Array>,
  maxFrameBytes = MAX_FRAME_BYTES,
): AsyncGenerator<Uint8Array> {
  let buffer: Buffer = Buffer.alloc(0);
  for await (const chunk of source) {
    buffer = buffer.byteLength === 0 ? Buffer.from(chunk) : Buffer.concat([buffer, chunk]);
    for (;;) {
      const header = readVarint(buffer);
      if (header === undefined) break;
      const [length, headerBytes] = header;
      if (length > maxFrameBytes) throw new FrameError(`frame exceeds ${maxFrameBytes} bytes`);
      if (buffer.byteLength < headerBytes + length) break;
      yield new Uint8Array(buffer.subarray(headerBytes, headerBytes + length));
      buffer = buffer.subarray(headerBytes + length);
    }
  }
  if (buffer.byteLength > 0) throw new FrameError('stream ended inside a frame');
}

function readVarint(buffer: Uint8Array): [number, number] | undefined {
  let value = 0;
  for (let i = 0; i < Math.min(buffer.byteLength, 5); i++) {
    const byte = buffer[i]!;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return [value, i + 1];
  }
  if (buffer.byteLength >= 5) throw new FrameError('malformed length prefix');
  return undefined;
}

/** Write one frame, then read exactly one frame back (request/response exchanges). */
export async function exchangeFrame(stream: ByteStream, payload: Uint8Array): Promise<Uint8Array> {
  await stream.write(encodeFrame(payload));
  await stream.closeWrite();
  for await (const frame of decodeFrames(stream.source)) return frame;
  throw new FrameError('stream closed without a reply');
}
