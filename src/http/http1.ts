import { bufferView } from '../encoding/bytes.ts';
import type { ApiRequest, HeaderMap, UpstreamResponse } from './exchange.ts';

/**
 * Minimal HTTP/1.1 framing for one request per mesh stream (SPEC §4, §5). Requests carry a
 * content-length body; responses are a head followed by the raw body until the stream ends
 * (connection: close semantics), so an SSE answer flows through byte for byte.
 */
export const MAX_HEAD_BYTES = 64 * 1024;

export class HttpWireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HttpWireError';
  }
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
  'trailer',
  'host',
  'content-length',
]);

/** Drops hop-by-hop headers: the mesh stream defines its own framing. */
export function endToEndHeaders(headers: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function assertToken(value: string, what: string): void {
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(value)) throw new HttpWireError(`invalid ${what}`);
}

function assertHeaderValue(value: string): void {
  if (/[\r\n\0]/.test(value)) throw new HttpWireError('invalid header value');
}

/** `name: value\r\n` lines; refuses names that are not tokens and values that could split a line. */
export function headerLines(headers: HeaderMap): string {
  let text = '';
  for (const [name, value] of Object.entries(headers)) {
    assertToken(name, 'header name');
    assertHeaderValue(value);
    text += `${name}: ${value}\r\n`;
  }
  return text;
}

export function serializeRequest(request: ApiRequest, extraHeaders: HeaderMap = {}): Uint8Array {
  assertToken(request.method, 'method');
  if (!request.path.startsWith('/') || /[\s\0]/.test(request.path)) throw new HttpWireError('invalid path');
  const headers = { ...endToEndHeaders(request.headers), ...extraHeaders };
  const head =
    `${request.method} ${request.path} HTTP/1.1\r\nhost: mesh\r\n` +
    `${headerLines(headers)}content-length: ${request.body.byteLength}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), request.body]);
}

/** The head's lines once its blank line has arrived, else undefined (bounded by MAX_HEAD_BYTES). */
export function splitHead(bytes: Uint8Array): { lines: string[]; bodyStart: number } | undefined {
  const end = bufferView(bytes).indexOf('\r\n\r\n');
  if (end < 0) {
    if (bytes.byteLength > MAX_HEAD_BYTES) throw new HttpWireError('header block too large');
    return undefined;
  }
  if (end > MAX_HEAD_BYTES) throw new HttpWireError('header block too large');
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('latin1');
  return { lines: text.split('\r\n'), bodyStart: end + 4 };
}

/** Header lines to lower-case names; a repeated field's values are joined with ', '. */
export function parseHeaders(lines: readonly string[]): HeaderMap {
  const headers: HeaderMap = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HttpWireError('malformed header line');
    const name = line.slice(0, colon).trim().toLowerCase();
    assertToken(name, 'header name');
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return headers;
}

/** A response head's status line and header fields; HttpWireError for a malformed status line. */
export function parseResponseHead(lines: readonly string[]): {
  status: number;
  http10: boolean;
  headers: HeaderMap;
} {
  const [statusLine = '', ...fields] = lines;
  const match = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(statusLine);
  if (!match) throw new HttpWireError('malformed status line');
  return { status: Number(match[2]), http10: match[1] === '0', headers: parseHeaders(fields) };
}

/** Parses a complete request (the sender half-closes after writing it). */
export function parseRequest(bytes: Uint8Array): ApiRequest {
  const head = splitHead(bytes);
  if (!head) throw new HttpWireError('incomplete request head');
  const [requestLine = '', ...rest] = head.lines;
  const match = /^([A-Z]+) (\/\S*) HTTP\/1\.[01]$/.exec(requestLine);
  if (!match) throw new HttpWireError('malformed request line');
  const headers = parseHeaders(rest);
  const body = bytes.subarray(head.bodyStart);
  const declared = headers['content-length'];
  if (declared !== undefined) {
    if (!/^\d+$/.test(declared)) throw new HttpWireError('invalid content-length');
    if (Number(declared) !== body.byteLength)
      throw new HttpWireError('body length does not match content-length');
  }
  return { method: match[1]!, path: match[2]!, headers, body };
}

export function serializeResponseHead(status: number, headers: HeaderMap): Uint8Array {
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new HttpWireError('invalid status');
  return Buffer.from(
    `HTTP/1.1 ${status} -\r\n${headerLines(endToEndHeaders(headers))}connection: close\r\n\r\n`,
    'latin1',
  );
}

/**
 * Reads a response head from a byte source and returns the response with a body that
 * streams the remaining bytes as they arrive.
 */
export async function parseResponse(source: AsyncIterable<Uint8Array>): Promise<UpstreamResponse> {
  const iterator = source[Symbol.asyncIterator]();
  let buffered: Buffer = Buffer.alloc(0);
  for (;;) {
    const next = await iterator.next();
    if (next.done) throw new HttpWireError('stream ended before the response head');
    buffered = buffered.byteLength === 0 ? Buffer.from(next.value) : Buffer.concat([buffered, next.value]);
    const head = splitHead(buffered);
    if (!head) continue;
    const { status, headers } = parseResponseHead(head.lines);
    delete headers.connection;
    const first = buffered.subarray(head.bodyStart);
    async function* body(): AsyncGenerator<Uint8Array> {
      try {
        if (first.byteLength > 0) yield first;
        for (;;) {
          const chunk = await iterator.next();
          if (chunk.done) return;
          yield chunk.value;
        }
      } finally {
        await iterator.return?.();
      }
    }
    return { status, headers, body: body() };
  }
}
