/**
 * A lean HTTP/1.1 client with kept-alive connections, for the request a host makes to its
 * inference backend on every routed request. node:http's ClientRequest, Agent and
 * IncomingMessage cost about 0.3 ms of CPU per request on these machines (measured side by
 * side, and on the critical path of every answer); this client writes a request in one write
 * and hands body bytes over as they arrive.
 *
 * One request at a time per connection, no pipelining. A connection is reused only after a
 * response whose end it could tell (content-length or chunked, no `connection: close`, nothing
 * unread); anything else closes it. Framing is strict: a response with an unknown
 * transfer-encoding or conflicting lengths is refused, not guessed at.
 */
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { bufferView } from '../encoding/bytes.ts';
import { ChunkedDecoder } from './chunked.ts';
import type { HeaderMap, UpstreamResponse } from './exchange.ts';
import { endToEndHeaders, HttpWireError, headerLines, parseResponseHead, splitHead } from './http1.ts';

export type HttpClientErrorCode = 'connect_failed' | 'connection_lost' | 'malformed_response';

export class HttpClientError extends Error {
  readonly code: HttpClientErrorCode;
  constructor(code: HttpClientErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'HttpClientError';
    this.code = code;
  }
}

/** The connection ended or failed before a single response byte: the server never answered. */
class NothingReceivedError extends HttpClientError {}

export interface Http1ClientOptions {
  /** http://host:port or https://host:port; each request gives its own path. */
  origin: string;
  /** Idle connections kept for reuse (default 64); more are closed once their response ends. */
  maxIdleConnections?: number;
  /** An idle connection is closed after this long (default 30 s). */
  idleTimeoutMs?: number;
  /** Default 10 s. */
  connectTimeoutMs?: number;
  /** Extra TLS options for an https origin (a private CA, say). */
  tls?: ConnectionOptions;
}

export interface Http1Request {
  method: string;
  /** Path with query, starting with '/'. */
  path: string;
  headers: HeaderMap;
  body?: Uint8Array;
  /** Aborting closes the connection, whether the response has begun or not. */
  signal?: AbortSignal;
}

/** Reading pauses the socket (TCP backpressure) past this much unread, resumes below the low mark. */
const READ_HIGH_WATER = 1024 * 1024;
const READ_LOW_WATER = 256 * 1024;

/** One socket and the bytes it has received that nobody has read yet. */
class Connection {
  readonly socket: Socket;
  #chunks: Buffer[] = [];
  #queued = 0;
  #paused = false;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(socket: Socket, onClose: (connection: Connection) => void) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.byteLength;
      if (this.#queued > READ_HIGH_WATER && !this.#paused) {
        this.#paused = true;
        socket.pause();
      }
      this.#notify();
    });
    socket.on('end', () => this.#end());
    socket.on('error', (err) => {
      this.#error ??= err;
      this.#notify();
    });
    socket.on('timeout', () => socket.destroy());
    socket.on('close', () => {
      this.#end();
      onClose(this);
    });
  }

  /** Still open, nothing unread: fit to carry another request. */
  get reusable(): boolean {
    return !this.#ended && this.#error === undefined && this.#chunks.length === 0 && !this.socket.destroyed;
  }

  /** The next bytes received, or undefined once the peer has closed; throws the socket's error. */
  async read(): Promise<Buffer | undefined> {
    for (;;) {
      const chunk = this.#chunks.shift();
      if (chunk !== undefined) {
        this.#queued -= chunk.byteLength;
        if (this.#paused && this.#queued < READ_LOW_WATER) {
          this.#paused = false;
          this.socket.resume();
        }
        return chunk;
      }
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** Puts bytes read too far back in front, for the next read. */
  unread(bytes: Buffer): void {
    if (bytes.byteLength === 0) return;
    this.#chunks.unshift(bytes);
    this.#queued += bytes.byteLength;
  }

  destroy(error?: Error): void {
    if (error !== undefined) this.#error ??= error;
    this.socket.destroy();
    this.#notify();
  }

  #end(): void {
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

type Framing =
  | { kind: 'none' }
  | { kind: 'length'; remaining: number }
  | { kind: 'chunked'; decoder: ChunkedDecoder }
  | { kind: 'close' };

interface ResponseHead {
  status: number;
  headers: HeaderMap;
  framing: Framing;
  keepAlive: boolean;
}

export class Http1Client {
  readonly #origin: URL;
  readonly #hostHeader: string;
  readonly #maxIdle: number;
  readonly #idleTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #tls: ConnectionOptions;
  /** Most recently parked last: the warmest connection is reused first. */
  readonly #idle: Connection[] = [];
  readonly #open = new Set<Connection>();
  #closed = false;

  constructor(options: Http1ClientOptions) {
    this.#origin = new URL(options.origin);
    if (this.#origin.protocol !== 'http:' && this.#origin.protocol !== 'https:') {
      throw new TypeError('Http1Client speaks http: and https: only');
    }
    this.#hostHeader = this.#origin.host;
    this.#maxIdle = options.maxIdleConnections ?? 64;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#tls = options.tls ?? {};
  }

  /**
   * Sends one request; resolves once the response head has arrived, with a body that yields the
   * bytes as they come and throws HttpClientError if the connection ends before the body does.
   * The caller must read the body to its end or stop early (`return()`), so the connection is
   * reused or closed.
   */
  async request(request: Http1Request): Promise<UpstreamResponse> {
    if (this.#closed) throw new HttpClientError('connect_failed', 'the HTTP client is closed');
    if (!/^[A-Z]+$/.test(request.method) || !/^\/[^\s\0]*$/.test(request.path)) {
      throw new HttpWireError('invalid method or path');
    }
    const head = Buffer.from(
      `${request.method} ${request.path} HTTP/1.1\r\nhost: ${this.#hostHeader}\r\n` +
        // Framing headers are this client's to write: a caller's host or length would contradict them.
        `${headerLines(endToEndHeaders(request.headers))}content-length: ${request.body?.byteLength ?? 0}\r\n\r\n`,
      'latin1',
    );
    const reused = this.#takeIdle();
    try {
      return await this.#exchange(reused ?? (await this.#connect(request.signal)), head, request);
    } catch (err) {
      // A kept-alive connection the server had closed as this request went out: the server
      // never saw it, so it goes once more on a new connection (as browsers do).
      if (reused === undefined || !(err instanceof NothingReceivedError) || request.signal?.aborted)
        throw err;
      return this.#exchange(await this.#connect(request.signal), head, request);
    }
  }

  /** Closes every connection, idle or in use. */
  close(): void {
    this.#closed = true;
    for (const connection of this.#open) connection.destroy();
    this.#idle.length = 0;
  }

  async #exchange(connection: Connection, head: Buffer, request: Http1Request): Promise<UpstreamResponse> {
    const { signal } = request;
    const onAbort = () => connection.destroy(abortReason(signal!));
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const release = (reuse: boolean) => {
      signal?.removeEventListener('abort', onAbort);
      if (reuse) this.#park(connection);
      else connection.destroy();
    };
    const { socket } = connection;
    socket.ref();
    socket.setTimeout(0);
    socket.cork();
    socket.write(head);
    if (request.body !== undefined && request.body.byteLength > 0) socket.write(request.body);
    socket.uncork();
    let response: ResponseHead;
    try {
      response = await readHead(connection, request.method);
    } catch (err) {
      release(false);
      if (err instanceof HttpWireError) {
        throw new HttpClientError('malformed_response', err.message, { cause: err });
      }
      throw err;
    }
    return {
      status: response.status,
      headers: response.headers,
      body: new ResponseBody(connection, response.framing, (complete) =>
        release(complete && response.keepAlive && connection.reusable),
      ),
    };
  }

  #takeIdle(): Connection | undefined {
    for (let connection = this.#idle.pop(); connection !== undefined; connection = this.#idle.pop()) {
      if (connection.reusable) return connection;
      connection.destroy();
    }
    return undefined;
  }

  #park(connection: Connection): void {
    if (this.#closed || this.#idle.length >= this.#maxIdle || !connection.reusable) {
      connection.destroy();
      return;
    }
    connection.socket.setTimeout(this.#idleTimeoutMs);
    // An idle connection must not keep the process alive.
    connection.socket.unref();
    this.#idle.push(connection);
  }

  #connect(signal: AbortSignal | undefined): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const host = this.#origin.hostname.replace(/^\[(.*)\]$/, '$1');
      const https = this.#origin.protocol === 'https:';
      const port = Number(this.#origin.port || (https ? 443 : 80));
      const socket = https
        ? tlsConnect({
            host,
            port,
            ...(isIP(host) === 0 ? { servername: host } : {}),
            ALPNProtocols: ['http/1.1'],
            ...this.#tls,
          })
        : netConnect({ host, port });
      socket.setNoDelay(true);
      const timer = setTimeout(
        () => socket.destroy(new Error(`connect timed out after ${this.#connectTimeoutMs} ms`)),
        this.#connectTimeoutMs,
      );
      const onAbort = () => socket.destroy(abortReason(signal!));
      const settle = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.off('error', onError);
      };
      const onError = (err: Error) => {
        settle();
        reject(
          signal?.aborted ? err : new HttpClientError('connect_failed', 'could not connect', { cause: err }),
        );
      };
      socket.once('error', onError);
      socket.once(https ? 'secureConnect' : 'connect', () => {
        settle();
        const connection = new Connection(socket, (closed) => {
          this.#open.delete(closed);
          const at = this.#idle.indexOf(closed);
          if (at >= 0) this.#idle.splice(at, 1);
        });
        this.#open.add(connection);
        resolve(connection);
      });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Reads a final response head (skipping 1xx interim ones) and decides how its body is framed. */
async function readHead(connection: Connection, method: string): Promise<ResponseHead> {
  let buffered: Buffer | undefined;
  let received = false;
  for (;;) {
    const head = buffered === undefined ? undefined : splitHead(buffered);
    if (head === undefined) {
      let chunk: Buffer | undefined;
      try {
        chunk = await connection.read();
      } catch (err) {
        if (received)
          throw new HttpClientError('connection_lost', 'connection failed in the response head', {
            cause: err,
          });
        throw new NothingReceivedError('connection_lost', 'connection failed before a response', {
          cause: err,
        });
      }
      if (chunk === undefined) {
        if (received) throw new HttpClientError('connection_lost', 'connection closed in the response head');
        throw new NothingReceivedError('connection_lost', 'connection closed before a response');
      }
      received = true;
      buffered = buffered === undefined ? chunk : Buffer.concat([buffered, chunk]);
      continue;
    }
    const { status, http10, headers } = parseResponseHead(head.lines);
    const rest = buffered!.subarray(head.bodyStart);
    if (status >= 100 && status < 200) {
      if (status === 101) throw new HttpClientError('malformed_response', 'unexpected protocol switch');
      buffered = rest.byteLength > 0 ? rest : undefined;
      continue;
    }
    connection.unread(rest);
    const framing = framingOf(status, method, headers);
    const connectionTokens = (headers.connection ?? '')
      .toLowerCase()
      .split(',')
      .map((t) => t.trim());
    const keepAlive =
      !http10 &&
      !connectionTokens.includes('close') &&
      framing.kind !== 'close' &&
      !(headers['transfer-encoding'] !== undefined && headers['content-length'] !== undefined);
    return { status, headers, framing, keepAlive };
  }
}

/** RFC 9112 §6.3, strictly: chunked or a single content-length, else until the connection closes. */
function framingOf(status: number, method: string, headers: HeaderMap): Framing {
  if (method === 'HEAD' || status === 204 || status === 304) return { kind: 'none' };
  const transferEncoding = headers['transfer-encoding'];
  if (transferEncoding !== undefined) {
    if (transferEncoding.trim().toLowerCase() !== 'chunked') {
      throw new HttpClientError('malformed_response', 'unsupported transfer-encoding');
    }
    return { kind: 'chunked', decoder: new ChunkedDecoder() };
  }
  const contentLength = headers['content-length'];
  if (contentLength !== undefined) {
    const values = new Set(contentLength.split(',').map((v) => v.trim()));
    const [value = ''] = values;
    if (values.size !== 1 || !/^\d{1,15}$/.test(value)) {
      throw new HttpClientError('malformed_response', 'invalid content-length');
    }
    const remaining = Number(value);
    return remaining === 0 ? { kind: 'none' } : { kind: 'length', remaining };
  }
  return { kind: 'close' };
}

/**
 * A response body as an async iterable. Written as an iterator object rather than a generator
 * so that a consumer that stops before its first read still releases the connection.
 */
class ResponseBody implements AsyncIterable<Uint8Array>, AsyncIterator<Uint8Array> {
  readonly #connection: Connection;
  readonly #framing: Framing;
  #release: ((complete: boolean) => void) | undefined;

  constructor(connection: Connection, framing: Framing, release: (complete: boolean) => void) {
    this.#connection = connection;
    this.#framing = framing;
    this.#release = release;
    if (framing.kind === 'none') this.#finish(true);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    try {
      for (;;) {
        if (this.#release === undefined) return { done: true, value: undefined };
        const framing = this.#framing;
        if (framing.kind === 'none') {
          this.#finish(true);
          continue;
        }
        const chunk = await this.#read();
        if (chunk === undefined) {
          if (framing.kind !== 'close') {
            throw new HttpClientError('connection_lost', 'connection closed before the response ended');
          }
          this.#finish(true);
          continue;
        }
        if (framing.kind === 'close') return { done: false, value: chunk };
        if (framing.kind === 'length') {
          const take = Math.min(framing.remaining, chunk.byteLength);
          // Bytes past the declared length stay unread, so the connection is not reused.
          this.#connection.unread(chunk.subarray(take));
          framing.remaining -= take;
          if (framing.remaining === 0) this.#finish(true);
          return { done: false, value: chunk.subarray(0, take) };
        }
        const out = framing.decoder.push(chunk);
        this.#connection.unread(bufferView(out.rest));
        if (out.done) this.#finish(true);
        if (out.data.length === 1) return { done: false, value: out.data[0]! };
        if (out.data.length > 1) return { done: false, value: Buffer.concat(out.data) };
      }
    } catch (err) {
      this.#finish(false);
      if (err instanceof HttpWireError) {
        throw new HttpClientError('malformed_response', err.message, { cause: err });
      }
      throw err;
    }
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    this.#finish(false);
    return { done: true, value: undefined };
  }

  async #read(): Promise<Buffer | undefined> {
    try {
      return await this.#connection.read();
    } catch (err) {
      throw new HttpClientError('connection_lost', 'connection failed mid-response', { cause: err });
    }
  }

  #finish(complete: boolean): void {
    const release = this.#release;
    this.#release = undefined;
    release?.(complete);
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}
