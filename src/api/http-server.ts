import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BodyTooLargeError, describeError, MeshError } from '../errors.ts';
import type { HeaderMap, UpstreamResponse } from '../http/exchange.ts';
import { endToEndHeaders } from '../http/http1.ts';
import type { Logger } from '../log.ts';
import { errorResponse, sseErrorEvent } from '../openai/errors.ts';

export interface IncomingApiRequest {
  method: string;
  path: string;
  headers: HeaderMap;
  /** Reads the body, enforcing the size cap (413 before reading when content-length says so). */
  readBody(): Promise<Uint8Array>;
  /** Aborts when the client disconnects: cancels the work upstream. */
  signal: AbortSignal;
}

export type RouteHandler = (request: IncomingApiRequest) => Promise<UpstreamResponse>;

export interface ListeningServer {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

/**
 * A small node:http front: turns each request into an IncomingApiRequest, runs the handler,
 * and writes the UpstreamResponse back as bytes arrive (backpressure honoured). Failures
 * become OpenAI-shaped errors; a failure after streaming started ends the stream with an
 * error event. The server never stops serving because of one bad request.
 */
export async function startHttpServer(options: {
  host: string;
  port: number;
  maxBodyBytes: number;
  handler: RouteHandler;
  logger: Logger;
}): Promise<ListeningServer> {
  const { logger } = options;
  const server: Server = createServer((req, res) => {
    void handle(req, res);
  });
  server.keepAliveTimeout = 5_000;
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    const request: IncomingApiRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: flattenHeaders(req.headers),
      readBody: () => readBody(req, options.maxBodyBytes),
      signal: controller.signal,
    };
    let response: UpstreamResponse;
    try {
      response = await options.handler(request);
    } catch (error) {
      if (!(error instanceof MeshError))
        logger.error({ err: describeError(error) }, 'request handler failed');
      response = errorResponse(error);
      if (error instanceof BodyTooLargeError) {
        // Answer now and discard the rest of the upload so the client sees the 413.
        res.setHeader('connection', 'close');
        req.resume();
      }
    }
    await writeResponse(res, response, controller, logger);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    port: address.port,
    host: options.host,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function writeResponse(
  res: ServerResponse,
  response: UpstreamResponse,
  controller: AbortController,
  logger: Logger,
): Promise<void> {
  const streaming = (response.headers['content-type'] ?? '').includes('text/event-stream');
  try {
    res.writeHead(response.status, endToEndHeaders(response.headers));
    // A stream's headers leave with its first chunk when that is already here (one socket
    // write, not two), else at the end of this turn: a slow first token never holds them back.
    // (`res.headersSent` cannot tell: it is true from writeHead on, before anything is sent.)
    let wroteBody = false;
    if (streaming) {
      setImmediate(() => {
        if (!wroteBody && !res.writableEnded && !res.destroyed) res.flushHeaders();
      });
    }
    for await (const chunk of response.body) {
      if (controller.signal.aborted) break;
      wroteBody = true;
      if (!res.write(chunk)) await waitForDrain(res, controller.signal);
    }
    res.end();
  } catch (error) {
    if (controller.signal.aborted) return;
    logger.warn({ err: describeError(error) }, 'answer failed after it started');
    if (!res.headersSent) {
      const failure = errorResponse(error);
      res.writeHead(failure.status, endToEndHeaders(failure.headers));
      for await (const chunk of failure.body) res.write(chunk);
      res.end();
    } else if (streaming) {
      res.end(sseErrorEvent(error));
    } else {
      res.destroy(error instanceof Error ? error : undefined);
    }
  } finally {
    // Stop whatever still produces the body (client gone or write failed). An answer that was
    // ended has nothing left to stop; aborting anyway cost a DOMException (a stack capture) per
    // request, since 'finish' only comes once the socket flushed.
    if (!res.writableEnded) controller.abort();
  }
}

function waitForDrain(res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

function flattenHeaders(headers: IncomingMessage['headers']): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/**
 * The whole request body; BodyTooLargeError past `limit` (the rest of the upload is then left to
 * flow unread). Collected from 'data' events rather than the stream's async iterator, which
 * costs tens of µs per request, and not copied when it came in one chunk.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) return Promise.reject(new BodyTooLargeError(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      settle();
      reject(new BodyTooLargeError(limit));
    };
    const onEnd = () => {
      settle();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (error: Error) => {
      settle();
      reject(error);
    };
    const onClose = () => {
      settle();
      reject(new Error('the client closed the connection before sending the whole body'));
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}
