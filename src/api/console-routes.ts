import { InvalidRequestError, MeshError } from '../errors.ts';
import { bodyOf, jsonResponse, type UpstreamResponse } from '../http/exchange.ts';
import { parseJsonBody } from '../openai/request.ts';
import { CONSOLE_HEADERS, CONSOLE_HTML } from './console-page.ts';
import type { IncomingApiRequest, RouteHandler } from './http-server.ts';

export interface ConsoleDeps {
  status(): unknown;
  trust: { resetPin(endpointId: string): Promise<boolean> };
}

/** The console port (loopback only): management JSON under /api and the web console at /. */
export function createConsoleRoutes(deps: ConsoleDeps): RouteHandler {
  return async (request: IncomingApiRequest): Promise<UpstreamResponse> => {
    const path = request.path.split('?')[0];
    refuseForeignOrigins(request);
    if (request.method === 'GET' && (path === '/' || path === '/index.html')) {
      const page = Buffer.from(CONSOLE_HTML);
      return {
        status: 200,
        headers: { ...CONSOLE_HEADERS, 'content-length': String(page.byteLength) },
        body: bodyOf(page),
      };
    }
    if (request.method === 'GET' && path === '/api/status') return jsonResponse(200, deps.status());
    if (request.method === 'POST' && path === '/api/trust/reset') {
      const body = parseJsonBody(await request.readBody()) as { peer?: unknown };
      if (typeof body.peer !== 'string' || !/^[0-9a-f]{64}$/.test(body.peer)) {
        throw new InvalidRequestError("'peer' must be a 64-character hex endpoint id");
      }
      return jsonResponse(200, { peer: body.peer, reset: await deps.trust.resetPin(body.peer) });
    }
    throw new MeshError('not_found', 'not_found', `No route for ${request.method} ${path}`);
  };
}

/**
 * The console is loopback-only, but a browser on this machine can still be steered at it:
 * refuse DNS-rebinding hosts and cross-origin writes (the status holds the invite token).
 */
function refuseForeignOrigins(request: IncomingApiRequest): void {
  const host = (request.headers.host ?? '').replace(/:\d+$/, '');
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) {
    throw new MeshError(
      'invalid_request',
      'forbidden_host',
      'The console answers only on 127.0.0.1 / localhost',
    );
  }
  const origin = request.headers.origin;
  if (
    request.method !== 'GET' &&
    origin !== undefined &&
    !/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(origin)
  ) {
    throw new MeshError(
      'invalid_request',
      'forbidden_origin',
      'Cross-origin requests to the console are refused',
    );
  }
  if (request.method === 'POST' && !(request.headers['content-type'] ?? '').startsWith('application/json')) {
    throw new InvalidRequestError('Send application/json');
  }
}
