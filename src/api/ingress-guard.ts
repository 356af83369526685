import { createHash, timingSafeEqual } from 'node:crypto';
import { MeshError, UnauthorizedError } from '../errors.ts';
import type { UpstreamResponse } from '../http/exchange.ts';
import type { IncomingApiRequest, RouteHandler } from './http-server.ts';
import { clientResponseHeaders } from './response-headers.ts';

/** Host names a loopback server answers to; anything else is a DNS-rebinding page. */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** True when the Host header names this machine's loopback (any port). */
export function isLoopbackHost(hostHeader: string | undefined): boolean {
  const host = (hostHeader ?? '').toLowerCase().replace(/:\d+$/, '');
  return LOOPBACK_HOSTS.has(host);
}

/** Refuses a Host other than loopback: a DNS-rebinding page reaches 127.0.0.1 under its own name. */
export function requireLoopbackHost(request: IncomingApiRequest): void {
  if (!isLoopbackHost(request.headers.host)) {
    throw new MeshError('forbidden', 'forbidden_host', 'This server answers only on 127.0.0.1 / localhost');
  }
}

/**
 * POSTs must say `application/json`: a web page can send text/plain or a form cross-origin
 * without a CORS preflight, but not application/json.
 */
export function requireJsonContentType(request: IncomingApiRequest): void {
  if (request.method !== 'POST') return;
  const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new MeshError(
      'unsupported_media_type',
      'unsupported_content_type',
      "POST bodies must be sent with 'content-type: application/json'",
    );
  }
}

/**
 * Checks `Authorization: Bearer KEY` against a set of keys in constant time: every key is
 * compared (as SHA-256 digests, so lengths leak nothing) and no comparison exits early.
 */
export class BearerKeys {
  readonly #digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.#digests = keys.map(digest);
  }

  get size(): number {
    return this.#digests.length;
  }

  matches(authorization: string | undefined): boolean {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
    const offered = digest(match?.[1] ?? '');
    let ok = false;
    for (const known of this.#digests) ok = timingSafeEqual(known, offered) || ok;
    return ok && match !== null;
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export interface ApiIngressOptions {
  /** The API is bound to loopback: refuse other Host names (DNS rebinding). */
  loopbackOnly: boolean;
  /** With keys, every request needs `Authorization: Bearer KEY`. */
  apiKeys: readonly string[];
}

/**
 * The OpenAI API's front door: Host allowlist on loopback, API keys when configured,
 * application/json on POSTs, and only an allowlist of response headers out (a remote host's
 * CORS or cookie headers never reach a browser).
 */
export function withApiIngress(handler: RouteHandler, options: ApiIngressOptions): RouteHandler {
  const keys = new BearerKeys(options.apiKeys);
  return async (request: IncomingApiRequest): Promise<UpstreamResponse> => {
    if (options.loopbackOnly) requireLoopbackHost(request);
    if (keys.size > 0 && !keys.matches(request.headers.authorization)) {
      throw new UnauthorizedError(
        request.headers.authorization === undefined
          ? "You didn't provide an API key: send 'Authorization: Bearer KEY' with a key this node was started with (--api-key / --api-keys-file)"
          : 'Incorrect API key provided',
      );
    }
    requireJsonContentType(request);
    const response = await handler(request);
    return { ...response, headers: clientResponseHeaders(response.headers) };
  };
}
