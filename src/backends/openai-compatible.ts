/**
 * Pass-through to an external OpenAI-compatible server (llama-server, Ollama, vLLM). Prompt
 * plaintext leaves this process here, hence plaintextBoundary 'external-backend'. Responses
 * stream through as they arrive; nothing is buffered.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { ConfigError, UpstreamError } from '../errors.ts';
import type { ApiRequest, HeaderMap, UpstreamResponse } from '../http/exchange.ts';
import type { Logger } from '../log.ts';
import { openAiError, parseJsonObject, routePath } from './openai-wire.ts';
import { BACKEND_PATHS, type InferenceBackend, type ModelInfo } from './types.ts';

export interface OpenAiCompatibleBackendOptions {
  /** e.g. http://127.0.0.1:8080 or http://127.0.0.1:8080/v1 */
  baseUrl: string;
  /** The name clients use (--backend-model). */
  modelName: string;
  /** The name the upstream server knows the model by, when different. */
  upstreamModel?: string;
  /** Sent upstream as `Authorization: Bearer …`; never logged. */
  apiKey?: string;
  logger: Logger;
  /** For the health probe and /v1/models only; requests go over node:http (see #post). */
  fetch?: typeof fetch;
  /** Health probe timeout. Default 2000 ms. */
  healthTimeoutMs?: number;
}

/** Request headers worth passing on; the client's own credentials for this node are not among them. */
const FORWARDED_REQUEST_HEADERS = ['content-type', 'accept', 'x-request-id'];

/** Hop-by-hop (RFC 9110 §7.6.1) plus headers that stop being true once the body is decoded. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-encoding',
  'set-cookie',
]);

/** Strips trailing slashes and a trailing /v1, so request paths (which start with /v1) can be appended. */
export function normalizeBaseUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new ConfigError('The backend URL is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ConfigError('The backend URL must be http:// or https://');
  url.search = '';
  url.hash = '';
  const path = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  return `${url.origin}${path}`;
}

export class OpenAiCompatibleBackend implements InferenceBackend {
  readonly kind = 'openai-compatible' as const;
  readonly plaintextBoundary = 'external-backend' as const;
  readonly modelName: string;
  readonly #base: string;
  readonly #options: OpenAiCompatibleBackendOptions;
  readonly #fetch: typeof fetch;
  readonly #agent: HttpAgent;
  readonly #log: Logger;
  #ready = false;
  #contextLength: number | undefined;

  constructor(options: OpenAiCompatibleBackendOptions) {
    this.#options = options;
    this.#base = normalizeBaseUrl(options.baseUrl);
    this.modelName = options.modelName;
    this.#fetch = options.fetch ?? fetch;
    // Kept-alive connections: a routed request should not pay for a TCP handshake.
    this.#agent = this.#base.startsWith('https:')
      ? new HttpsAgent({ keepAlive: true })
      : new HttpAgent({ keepAlive: true });
    this.#log = options.logger;
  }

  models(): ModelInfo[] {
    return [{ name: this.modelName, contextLength: this.#contextLength, ready: this.#ready }];
  }

  /**
   * Does not require the upstream to be up yet (it may start after this node); requests fail
   * with UpstreamError until it is. Learns the context length from /v1/models when offered.
   */
  async start(): Promise<void> {
    this.#ready = true;
    const models = await this.#probe('/v1/models');
    if (models?.ok) {
      this.#contextLength = contextLengthFrom(await models.json().catch(() => undefined), this.#upstreamName);
    } else {
      this.#log.warn({ url: this.#base }, 'OpenAI-compatible backend not reachable yet');
    }
  }

  async stop(): Promise<void> {
    this.#ready = false;
    this.#agent.destroy();
  }

  async healthy(): Promise<boolean> {
    for (const path of ['/v1/models', '/health']) {
      const res = await this.#probe(path);
      if (res?.ok) return true;
    }
    return false;
  }

  get #upstreamName(): string {
    return this.#options.upstreamModel ?? this.modelName;
  }

  async #probe(path: string): Promise<Response | undefined> {
    try {
      const res = await this.#fetch(`${this.#base}${path}`, {
        headers: this.#authHeaders(),
        signal: AbortSignal.timeout(this.#options.healthTimeoutMs ?? 2000),
      });
      if (!res.ok) await res.body?.cancel().catch(() => {});
      return res;
    } catch {
      return undefined;
    }
  }

  #authHeaders(): Record<string, string> {
    return this.#options.apiKey ? { authorization: `Bearer ${this.#options.apiKey}` } : {};
  }

  async handle(request: ApiRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    const path = routePath(request.path);
    if (!(BACKEND_PATHS as readonly string[]).includes(path))
      return openAiError(404, 'not_found', `Unknown path ${path}`);
    if (request.method.toUpperCase() !== 'POST')
      return openAiError(405, 'method_not_allowed', `Use POST for ${path}`);

    let body: Uint8Array = request.body;
    const upstreamModel = this.#options.upstreamModel;
    if (upstreamModel !== undefined && upstreamModel !== this.modelName) {
      let parsed: Record<string, unknown>;
      try {
        parsed = parseJsonObject(request.body);
      } catch {
        return openAiError(400, 'invalid_json', 'The request body is not a JSON object');
      }
      parsed.model = upstreamModel;
      body = Buffer.from(JSON.stringify(parsed));
    }

    const headers: Record<string, string> = { ...this.#authHeaders() };
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = request.headers[name];
      if (value !== undefined) headers[name] = value;
    }
    headers['content-type'] ??= 'application/json';

    let res: IncomingMessage;
    try {
      res = await this.#post(`${this.#base}${request.path}`, headers, body, signal);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      this.#log.warn({ url: this.#base, path, err: describe(err) }, 'OpenAI-compatible backend unreachable');
      throw new UpstreamError('The inference backend is unreachable', 'upstream_unreachable', { cause: err });
    }
    return { status: res.statusCode ?? 502, headers: responseHeaders(res), body: relay(res, signal) };
  }

  /**
   * One POST over node:http rather than fetch: on the per-request path fetch (undici + WHATWG
   * streams) costs about 0.3 ms more CPU per request on these machines (measured side by side).
   */
  #post(url: string, headers: Record<string, string>, body: Uint8Array, signal: AbortSignal) {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(url, {
        method: 'POST',
        agent: this.#agent,
        signal,
        // The answer is parsed (SSE, usage, /v1/responses translation): ask for it uncompressed.
        headers: { ...headers, 'accept-encoding': 'identity', 'content-length': String(body.byteLength) },
      });
      req.once('response', resolve);
      req.once('error', reject);
      req.end(body);
    });
  }
}

function responseHeaders(res: IncomingMessage): HeaderMap {
  const out: HeaderMap = {};
  const encoded = contentEncoding(res) !== undefined;
  for (const [name, value] of Object.entries(res.headers)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name)) continue;
    if (name === 'content-length' && encoded) continue; // the length of the encoded body, not ours
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** The body's compression when a server ignored `accept-encoding: identity`. */
function contentEncoding(res: IncomingMessage): string | undefined {
  const encoding = res.headers['content-encoding']?.trim().toLowerCase();
  return encoding && encoding !== 'identity' ? encoding : undefined;
}

function decoded(res: IncomingMessage): AsyncIterable<Uint8Array> {
  switch (contentEncoding(res)) {
    case undefined:
      return res;
    case 'gzip':
    case 'x-gzip':
      return res.pipe(createGunzip());
    case 'deflate':
      return res.pipe(createInflate());
    case 'br':
      return res.pipe(createBrotliDecompress());
    default:
      throw new UpstreamError(
        `The inference backend answered with an unsupported content-encoding`,
        'upstream_failed',
      );
  }
}

/** Yields the upstream body chunk by chunk; a broken upstream becomes an UpstreamError. */
async function* relay(res: IncomingMessage, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  let completed = false;
  try {
    for await (const chunk of decoded(res)) yield chunk as Uint8Array;
    // A connection that drops mid-body ends the stream without an error event.
    if (!res.complete) throw new Error('the backend closed the connection before the answer ended');
    completed = true;
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    if (err instanceof UpstreamError) throw err;
    throw new UpstreamError('The inference backend connection failed mid-response', 'upstream_failed', {
      cause: err,
    });
  } finally {
    // Stops the upstream request when our reader leaves early.
    if (!completed) res.destroy();
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause as { code?: unknown } | undefined;
    return typeof cause?.code === 'string' ? cause.code : err.name;
  }
  return 'unknown';
}

/** Context length as llama-server (meta.n_ctx_train), vLLM (max_model_len) or others report it. */
function contextLengthFrom(listing: unknown, model: string): number | undefined {
  const data = (listing as { data?: unknown } | undefined)?.data;
  if (!Array.isArray(data)) return undefined;
  const entry = (data.find((m) => (m as { id?: unknown })?.id === model) ??
    (data.length === 1 ? data[0] : undefined)) as Record<string, unknown> | undefined;
  if (!entry) return undefined;
  const meta = entry.meta as Record<string, unknown> | undefined;
  for (const value of [
    entry.context_length,
    entry.max_model_len,
    entry.context_window,
    meta?.n_ctx,
    meta?.n_ctx_train,
  ]) {
    if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
  }
  return undefined;
}
