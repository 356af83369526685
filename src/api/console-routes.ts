import { ConfigError, InvalidRequestError, MeshError, UnauthorizedError } from '../errors.ts';
import { bodyOf, jsonResponse, type UpstreamResponse } from '../http/exchange.ts';
import type { NodeMetrics } from '../metrics/node-metrics.ts';
import { parseJsonBody } from '../openai/request.ts';
import { ConsoleAssets } from './console-assets.ts';
import type { IncomingApiRequest, RouteHandler } from './http-server.ts';
import { BearerKeys, requireJsonContentType, requireLoopbackHost } from './ingress-guard.ts';

export interface ConsoleDeps {
  status(): { node: { token: string | null } };
  trust: { resetPin(endpointId: string): Promise<boolean> };
  /** Mesh membership (docs/membership.md): invites and, on the owner node, revocations. */
  membership?: {
    invite(options: { expiresInMs?: number }): string;
    revoke(endpointId: string): Promise<void>;
  };
  /** The local credential (0600 file in the data dir) that unlocks the token and writes. */
  credential: string;
  metrics: NodeMetrics;
  /** This node's OpenAI routes: the playground's chat runs through them like any client's. */
  inference: RouteHandler;
  assets?: ConsoleAssets;
}

/**
 * The console port (loopback only): the web console at /, management JSON under /api, the
 * playground's chat at /api/chat, and Prometheus metrics at /metrics.
 */
export function createConsoleRoutes(deps: ConsoleDeps): RouteHandler {
  const assets = deps.assets ?? new ConsoleAssets();
  const credential = new BearerKeys([deps.credential]);
  const authorized = (request: IncomingApiRequest) => credential.matches(request.headers.authorization);
  return async (request: IncomingApiRequest): Promise<UpstreamResponse> => {
    const path = request.path.split('?')[0] ?? '/';
    refuseForeignOrigins(request);
    if (request.method === 'GET' && assets.has(path)) return assets.response(path);
    if (request.method === 'GET' && path === '/metrics') {
      const { contentType, body } = await deps.metrics.text();
      const bytes = Buffer.from(body);
      return {
        status: 200,
        headers: { 'content-type': contentType, 'content-length': String(bytes.byteLength) },
        body: bodyOf(bytes),
      };
    }
    if (request.method === 'GET' && path === '/api/status') {
      const report = deps.status();
      // The token admits anyone to the mesh: only the node's own user (the credential) sees it.
      if (!authorized(request)) report.node.token = null;
      return jsonResponse(200, report);
    }
    if (request.method === 'GET' && path === '/api/traffic') {
      return jsonResponse(200, { at: Date.now(), models: await deps.metrics.traffic() });
    }
    if (request.method === 'POST' && path === '/api/chat') {
      return deps.inference({ ...request, path: '/v1/chat/completions' });
    }
    if (request.method === 'POST' && path === '/api/trust/reset') {
      if (!authorized(request)) throw consoleCredentialRequired();
      const body = parseJsonBody(await request.readBody()) as { peer?: unknown };
      if (typeof body.peer !== 'string' || !/^[0-9a-f]{64}$/.test(body.peer)) {
        throw new InvalidRequestError("'peer' must be a 64-character hex endpoint id");
      }
      return jsonResponse(200, { peer: body.peer, reset: await deps.trust.resetPin(body.peer) });
    }
    if (request.method === 'POST' && path === '/api/invite' && deps.membership) {
      if (!authorized(request)) throw consoleCredentialRequired();
      const body = parseJsonBody(await request.readBody()) as { expiresInMs?: unknown };
      const expiresInMs = body.expiresInMs;
      if (
        expiresInMs !== undefined &&
        (typeof expiresInMs !== 'number' || !Number.isInteger(expiresInMs) || expiresInMs <= 0)
      ) {
        throw new InvalidRequestError("'expiresInMs' must be a positive whole number of milliseconds");
      }
      const membership = deps.membership;
      return jsonResponse(200, { token: refusedAs400(() => membership.invite({ expiresInMs })) });
    }
    if (request.method === 'POST' && path === '/api/revoke' && deps.membership) {
      if (!authorized(request)) throw consoleCredentialRequired();
      const body = parseJsonBody(await request.readBody()) as { peer?: unknown };
      if (typeof body.peer !== 'string' || !/^[0-9a-f]{64}$/.test(body.peer)) {
        throw new InvalidRequestError("'peer' must be a 64-character hex endpoint id");
      }
      const membership = deps.membership;
      await refusedAs400(() => membership.revoke(body.peer as string));
      return jsonResponse(200, { peer: body.peer, revoked: true });
    }
    throw new MeshError('not_found', 'not_found', `No route for ${request.method} ${path}`);
  };
}

/** A membership action this node cannot take (not the owner, no address yet) is a 400 that says why. */
function refusedAs400<T>(action: () => T): T {
  const rethrow = (error: unknown): never => {
    throw error instanceof ConfigError ? new InvalidRequestError(error.message) : error;
  };
  try {
    const result = action();
    return (result instanceof Promise ? result.catch(rethrow) : result) as T;
  } catch (error) {
    return rethrow(error);
  }
}

function consoleCredentialRequired(): UnauthorizedError {
  return new UnauthorizedError(
    "Changing this node needs the console credential: use the mesh-llm CLI as the node's user",
    'console_credential_required',
  );
}

/**
 * The console is loopback-only, but a browser on this machine can still be steered at it:
 * refuse DNS-rebinding hosts and writes from any other origin, other local ports included (a
 * page another local server serves is not the console).
 */
function refuseForeignOrigins(request: IncomingApiRequest): void {
  requireLoopbackHost(request);
  const origin = request.headers.origin;
  if (request.method !== 'GET' && origin !== undefined && origin !== `http://${request.headers.host}`) {
    throw new MeshError('forbidden', 'forbidden_origin', 'Cross-origin requests to the console are refused');
  }
  requireJsonContentType(request);
}
