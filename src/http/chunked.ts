import { bufferView } from '../encoding/bytes.ts';
import { HttpWireError } from './http1.ts';

/** A chunk-size line (hex size plus extensions) longer than this is refused. */
const MAX_SIZE_LINE = 1024;
/** Trailer fields after the last chunk, all together. */
const MAX_TRAILER_BYTES = 64 * 1024;

type State = 'size' | 'data' | 'data-end' | 'trailers' | 'done';

export interface ChunkedOutput {
  /** Body bytes decoded from this input, as views into it (no copies). */
  data: Uint8Array[];
  /** The last chunk and its trailers have been read. */
  done: boolean;
  /** Input bytes after the end of the body (only when `done`). */
  rest: Uint8Array;
}

/**
 * Incremental decoder of an HTTP/1.1 chunked body (RFC 9112 §7.1): input may be split
 * anywhere, body bytes come out as they arrive. Strict: CRLF line ends, hex sizes only, bounded
 * size lines and trailers; anything else is an HttpWireError. Extensions and trailers are
 * read and dropped.
 */
export class ChunkedDecoder {
  #state: State = 'size';
  /** The current line (size line or trailer line) so far, when it spans inputs. */
  #line = '';
  #remaining = 0;
  /** CRLF bytes still expected after a chunk's data. */
  #crlfSeen = 0;
  #trailerBytes = 0;

  get done(): boolean {
    return this.#state === 'done';
  }

  push(input: Uint8Array): ChunkedOutput {
    const data: Uint8Array[] = [];
    let at = 0;
    while (at < input.byteLength && this.#state !== 'done') {
      switch (this.#state) {
        case 'data': {
          const take = Math.min(this.#remaining, input.byteLength - at);
          data.push(input.subarray(at, at + take));
          at += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = 'data-end';
          break;
        }
        case 'data-end': {
          const expected = this.#crlfSeen === 0 ? 0x0d : 0x0a;
          if (input[at] !== expected) throw new HttpWireError('chunk data not followed by CRLF');
          at += 1;
          this.#crlfSeen += 1;
          if (this.#crlfSeen === 2) {
            this.#crlfSeen = 0;
            this.#state = 'size';
          }
          break;
        }
        case 'size':
        case 'trailers': {
          const line = this.#readLine(input, at);
          if (line === undefined) return { data, done: false, rest: EMPTY };
          at = line.next;
          if (this.#state === 'size') this.#onSizeLine(line.text);
          else if (line.text === '') this.#state = 'done';
        }
      }
    }
    return { data, done: this.#state === 'done', rest: input.subarray(at) };
  }

  /** The line ending at the next CRLF, joined with what earlier inputs held of it. */
  #readLine(input: Uint8Array, from: number): { text: string; next: number } | undefined {
    const bytes = bufferView(input);
    const lf = bytes.indexOf(0x0a, from);
    const end = lf < 0 ? input.byteLength : lf + 1;
    this.#line += bytes.toString('latin1', from, end);
    const limit = this.#state === 'size' ? MAX_SIZE_LINE : MAX_TRAILER_BYTES - this.#trailerBytes;
    if (this.#line.length > limit) {
      throw new HttpWireError(this.#state === 'size' ? 'chunk size line too long' : 'trailers too large');
    }
    if (lf < 0) return undefined;
    if (!this.#line.endsWith('\r\n')) throw new HttpWireError('chunked line not ended by CRLF');
    if (this.#state === 'trailers') this.#trailerBytes += this.#line.length;
    const text = this.#line.slice(0, -2);
    this.#line = '';
    return { text, next: end };
  }

  #onSizeLine(text: string): void {
    const match = /^([0-9A-Fa-f]{1,13})[ \t]*(?:;.*)?$/.exec(text);
    if (!match) throw new HttpWireError('malformed chunk size');
    const size = Number.parseInt(match[1]!, 16);
    if (size === 0) {
      this.#state = 'trailers';
      return;
    }
    this.#remaining = size;
    this.#state = 'data';
  }
}

const EMPTY = new Uint8Array(0);
