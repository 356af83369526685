/**
 * Pass-through to an external OpenAI-compatible server (llama-server, Ollama, vLLM). Prompt
 * plaintext leaves this process here, hence plaintextBoundary 'external-backend'. Responses
 * stream through as they arrive; nothing is buffered.
 */
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { ConfigError, InvalidRequestError, UpstreamError } from '../errors.ts';
import type { HeaderMap, UpstreamResponse } from '../http/exchange.ts';
import { Http1Client } from '../http/http1-client.ts';
import type { Logger } from '../log.ts';
import { errorResponse } from '../openai/errors.ts';
import type { OpenAiRequest } from '../openai/request.ts';
import { canonicalRequestBody } from './canonical-body.ts';
import type { InferenceBackend, ModelInfo } from './types.ts';

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
  /** For the health probe and /v1/models only; requests go over Http1Client. */
  fetch?: typeof fetch;
  /** Health probe timeout. Default 2000 ms. */
  healthTimeoutMs?: number;
}

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
  readonly #client: Http1Client;
  /** The base URL's path ('' or e.g. '/proxy'), put before each request's /v1/... path. */
  readonly #pathPrefix: string;
  readonly #log: Logger;
  #ready = false;
  #contextLength: number | undefined;

  constructor(options: OpenAiCompatibleBackendOptions) {
    this.#options = options;
    this.#base = normalizeBaseUrl(options.baseUrl);
    this.modelName = options.modelName;
    this.#fetch = options.fetch ?? fetch;
    // Kept-alive connections: a routed request should not pay for a TCP handshake.
    const base = new URL(this.#base);
    this.#client = new Http1Client({ origin: base.origin });
    this.#pathPrefix = base.pathname.replace(/\/+$/, '');
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
    this.#client.close();
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

  /** Sends the request as the client sent it, re-serialized from its validated form with the admitted model. */
  async handle(request: OpenAiRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    const path = request.path;
    let body: Uint8Array;
    try {
      body = canonicalRequestBody(request.body, this.#upstreamName);
    } catch (error) {
      if (!(error instanceof InvalidRequestError)) throw error;
      return errorResponse(error);
    }
    const headers: Record<string, string> = { ...this.#authHeaders(), 'content-type': 'application/json' };

    // The answer is parsed (SSE, usage, /v1/responses translation): ask for it uncompressed.
    headers['accept-encoding'] = 'identity';

    let res: UpstreamResponse;
    try {
      res = await this.#client.request({
        method: 'POST',
        path: `${this.#pathPrefix}${path}`,
        headers,
        body,
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      this.#log.warn({ url: this.#base, path, err: describe(err) }, 'OpenAI-compatible backend unreachable');
      throw new UpstreamError('The inference backend is unreachable', 'upstream_unreachable', { cause: err });
    }
    return { status: res.status, headers: responseHeaders(res.headers), body: relay(res, signal) };
  }
}

function responseHeaders(headers: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  const encoded = contentEncoding(headers) !== undefined;
  for (const [name, value] of Object.entries(headers)) {
    if (DROPPED_RESPONSE_HEADERS.has(name)) continue;
    if (name === 'content-length' && encoded) continue; // the length of the encoded body, not ours
    out[name] = value;
  }
  return out;
}

/** The body's compression when a server ignored `accept-encoding: identity`. */
function contentEncoding(headers: HeaderMap): string | undefined {
  const encoding = headers['content-encoding']?.trim().toLowerCase();
  return encoding && encoding !== 'identity' ? encoding : undefined;
}

function decoded(res: UpstreamResponse): AsyncIterable<Uint8Array> {
  const encoding = contentEncoding(res.headers);
  if (encoding === undefined) return res.body;
  let decoder: Transform;
  switch (encoding) {
    case 'gzip':
    case 'x-gzip':
      decoder = createGunzip();
      break;
    case 'deflate':
      decoder = createInflate();
      break;
    case 'br':
      decoder = createBrotliDecompress();
      break;
    default:
      throw new UpstreamError(
        `The inference backend answered with an unsupported content-encoding`,
        'upstream_failed',
      );
  }
  // pipeline carries an upstream failure into the decoder, so the reader sees it.
  pipeline(Readable.from(res.body, { objectMode: false }), decoder).catch(() => {});
  return decoder;
}

/** Yields the upstream body chunk by chunk; a broken upstream becomes an UpstreamError. */
async function* relay(res: UpstreamResponse, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  let completed = false;
  try {
    for await (const chunk of decoded(res)) yield chunk as Uint8Array;
    completed = true;
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    if (err instanceof UpstreamError) throw err;
    throw new UpstreamError('The inference backend connection failed mid-response', 'upstream_failed', {
      cause: err,
    });
  } finally {
    // Stops the upstream request when our reader leaves early.
    if (!completed) await res.body[Symbol.asyncIterator]().return?.();
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
