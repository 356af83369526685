/**
 * Server-sent events: an incremental parser (WHATWG event-stream rules) and an encoder.
 * The parser works on raw bytes as they arrive, so events split at any byte boundary,
 * including inside a multi-byte UTF-8 character, come out whole and unchanged.
 */
import { UpstreamError } from '../errors.ts';
import type { HeaderMap, UpstreamResponse } from '../http/exchange.ts';

export interface SseEvent {
  /** The `event:` field, when the event had one. */
  event?: string;
  /** The `data:` lines joined with '\n'. */
  data: string;
  /** The `id:` field, when the event had one. */
  id?: string;
}

export interface ParseSseOptions {
  /** Cap on one event (line + accumulated data), in UTF-16 code units. Default 16 MiB. */
  maxEventChars?: number;
}

/** An SSE stream that cannot be parsed (an event over the size cap). */
export class SseParseError extends UpstreamError {
  constructor(message: string) {
    super(message, 'invalid_sse');
  }
}

const DEFAULT_MAX_EVENT_CHARS = 16 * 1024 * 1024;
const LF = 10;
const CR = 13;

/**
 * Parses an SSE byte stream into events. Comment lines are skipped, events with no data
 * are not dispatched (per spec). At end of input a final event that lacks its blank line
 * (or its last newline) is still dispatched: a consumer that needs an explicit terminator
 * (e.g. `data: [DONE]`) detects truncation itself.
 */
export async function* parseSse(
  source: AsyncIterable<Uint8Array>,
  options: ParseSseOptions = {},
): AsyncGenerator<SseEvent> {
  const maxChars = options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS;
  // fatal: false turns invalid UTF-8 into U+FFFD instead of throwing; stream: true keeps
  // a split multi-byte sequence pending until its remaining bytes arrive.
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let scanFrom = 0;
  let skipLeadingLf = false;
  let dataLines: string[] = [];
  let dataChars = 0;
  let eventName: string | undefined;
  let lastId: string | undefined;
  let hasData = false;

  const processLine = (line: string): SseEvent | undefined => {
    if (line === '') {
      if (!hasData) {
        eventName = undefined;
        return undefined;
      }
      const out: SseEvent = { data: dataLines.join('\n') };
      if (eventName !== undefined) out.event = eventName;
      if (lastId !== undefined) out.id = lastId;
      dataLines = [];
      dataChars = 0;
      hasData = false;
      eventName = undefined;
      return out;
    }
    if (line.charCodeAt(0) === 0x3a /* ':' comment */) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    switch (field) {
      case 'data':
        dataChars += value.length + 1;
        if (dataChars > maxChars) throw new SseParseError(`SSE event exceeds ${maxChars} characters`);
        dataLines.push(value);
        hasData = true;
        break;
      case 'event':
        eventName = value;
        break;
      case 'id':
        if (!value.includes('\0')) lastId = value;
        break;
      default:
        // `retry` and unknown fields carry nothing we use.
        break;
    }
    return undefined;
  };

  function* drain(): Generator<SseEvent> {
    let pos = 0;
    try {
      if (skipLeadingLf && buffer.length > 0) {
        if (buffer.charCodeAt(0) === LF) pos = 1;
        skipLeadingLf = false;
      }
      while (true) {
        let end = -1;
        for (let i = Math.max(pos, scanFrom); i < buffer.length; i++) {
          const c = buffer.charCodeAt(i);
          if (c === LF || c === CR) {
            end = i;
            break;
          }
        }
        if (end === -1) {
          scanFrom = buffer.length;
          if (buffer.length - pos + dataChars > maxChars) {
            throw new SseParseError(`SSE line exceeds ${maxChars} characters`);
          }
          return;
        }
        const line = buffer.slice(pos, end);
        pos = end + 1;
        // A CR may be the first half of a CRLF whose LF arrives in the next chunk.
        if (buffer.charCodeAt(end) === CR) {
          if (pos < buffer.length) {
            if (buffer.charCodeAt(pos) === LF) pos++;
          } else {
            skipLeadingLf = true;
          }
        }
        const ev = processLine(line);
        if (ev) yield ev;
      }
    } finally {
      if (pos > 0) {
        buffer = buffer.slice(pos);
        scanFrom = Math.max(0, scanFrom - pos);
      }
    }
  }

  for await (const chunk of source) {
    if (!(chunk instanceof Uint8Array)) throw new SseParseError('SSE source yielded a non-byte chunk');
    buffer += decoder.decode(chunk, { stream: true });
    yield* drain();
  }
  buffer += decoder.decode();
  yield* drain();
  // End of input: an unterminated last line, then a pending event without its blank line.
  if (buffer.length > 0) {
    const ev = processLine(buffer);
    buffer = '';
    if (ev) yield ev;
  }
  const last = processLine('');
  if (last) yield last;
}

/** Encodes one SSE event. Multi-line data becomes several `data:` lines. */
export function formatSse(event: { event?: string; data: string }): Uint8Array {
  let text = '';
  if (event.event !== undefined) text += `event: ${event.event.replace(/[\r\n]/g, '')}\n`;
  for (const line of event.data.split(/\r\n|\r|\n/)) text += `data: ${line}\n`;
  return Buffer.from(`${text}\n`);
}

export const SSE_HEADERS: HeaderMap = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
};

/** One `data:` event carrying `value` as JSON. */
export function sseEvent(value: unknown): Buffer {
  return Buffer.from(`data: ${JSON.stringify(value)}\n\n`);
}

export const SSE_DONE = Buffer.from('data: [DONE]\n\n');

export function sseResponse(body: AsyncIterable<Uint8Array>, headers: HeaderMap = {}): UpstreamResponse {
  return { status: 200, headers: { ...SSE_HEADERS, ...headers }, body };
}
