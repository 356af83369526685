import { bufferView } from '../encoding/bytes.ts';
import { BodyTooLargeError } from '../errors.ts';

/**
 * The transport-neutral shape of one HTTP exchange. The API layer, the router, the
 * backends and the mesh transport (plaintext or encrypted) all speak these types, so a
 * response takes the same code path whether it came from a local backend, a remote
 * host in plaintext, or a decrypted E2E stream.
 */
export type HeaderMap = Record<string, string>;

export interface ApiRequest {
  method: string;
  /** Path with query, e.g. "/v1/chat/completions". */
  path: string;
  /** Lower-case header names. */
  headers: HeaderMap;
  body: Uint8Array;
}

export interface UpstreamResponse {
  status: number;
  /** Lower-case header names. */
  headers: HeaderMap;
  /** Body bytes as they arrive; never buffered whole for streamed answers. */
  body: AsyncIterable<Uint8Array>;
}

/**
 * Collects a body fully (non-streamed JSON, whole requests); BodyTooLargeError past the limit.
 * A body that came as one chunk is returned as a view of that chunk.
 */
export async function readAll(body: AsyncIterable<Uint8Array>, limitBytes = Number.POSITIVE_INFINITY) {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > limitBytes) throw new BodyTooLargeError(limitBytes);
    chunks.push(chunk);
  }
  // One chunk (the usual whole request or answer): a view of it, not a copy.
  if (chunks.length === 1) return bufferView(chunks[0]!);
  return Buffer.concat(chunks);
}

export async function* bodyOf(...chunks: Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

export function jsonResponse(status: number, value: unknown, headers: HeaderMap = {}): UpstreamResponse {
  const body = Buffer.from(JSON.stringify(value));
  return {
    status,
    headers: { 'content-type': 'application/json', 'content-length': String(body.byteLength), ...headers },
    body: bodyOf(body),
  };
}
