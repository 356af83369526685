import type { Stream } from '@libp2p/interface';
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils';
import { decode, encode } from 'it-length-prefixed';

/**
 * Gossip, admission, attest and load frames: unsigned varint length prefix + payload, at most
 * 8 MiB (SPEC §4). libp2p's own codecs do the work: lpStream on a libp2p stream, and
 * it-length-prefixed on a ByteStream, which may be app-forwarded rather than a libp2p stream.
 */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024;

/** A varint length prefix is at most this long. */
const MAX_PREFIX_BYTES = 10;

/** Errors both codecs throw for a length prefix or frame that a well-behaved peer never sends. */
const MALFORMED_FRAME = new Set([
  'InvalidDataLengthError',
  'InvalidDataLengthLengthError',
  'InvalidMessageLengthError',
]);

export function isMalformedFrame(error: Error): boolean {
  return MALFORMED_FRAME.has(error.name);
}

/**
 * lpStream refusing frames over `maxBytes`. Its read buffer must hold one whole frame: at the
 * default (4 MiB) a larger frame, though within the cap, would overflow it and reset the stream.
 */
export function frameStream(stream: Stream, maxBytes = MAX_FRAME_BYTES): LengthPrefixedStream<Stream> {
  return lpStream(stream, { maxDataLength: maxBytes, maxBufferSize: maxBytes + MAX_PREFIX_BYTES });
}

/** One frame for a ByteStream write. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  return encode.single(payload, { maxDataLength: MAX_FRAME_BYTES }).subarray();
}

/**
 * Whole frames from a ByteStream source; throws on one over `maxBytes` (before buffering it)
 * or on a stream that ends inside one (UnexpectedEOFError).
 */
export async function* decodeFrames(
  source: AsyncIterable<Uint8Array>,
  maxBytes = MAX_FRAME_BYTES,
): AsyncGenerator<Uint8Array> {
  for await (const frame of decode(source, { maxDataLength: maxBytes })) yield frame.subarray();
}
