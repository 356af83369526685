import type { HeaderMap } from '../http/exchange.ts';

/**
 * Response headers a client of this node may see. Everything else a host or backend sends
 * (access-control-*, set-cookie, content-security-policy, location, ...) stays here: a remote
 * host must not be able to open this loopback API to web pages or set cookies on it.
 */
const ALLOWED = new Set([
  'content-type',
  'content-length',
  'cache-control',
  'retry-after',
  'x-request-id',
  'openai-processing-ms',
]);
const ALLOWED_PREFIXES = ['x-mesh-', 'x-ratelimit-'];

export function clientResponseHeaders(headers: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (ALLOWED.has(lower) || ALLOWED_PREFIXES.some((prefix) => lower.startsWith(prefix))) out[lower] = value;
  }
  return out;
}
