/**
 * Pass-through to an external OpenAI-compatible server (llama-server, Ollama, vLLM). Prompt
 * plaintext leaves this process here, hence plaintextBoundary 'external-backend'. Responses
 * stream through as they arrive; nothing is buffered.
 */
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { ConfigError, MeshError, ModelNotFoundError, UpstreamError } from '../errors.ts';
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
  /**
   * The names clients use (--backend-model, repeatable). Omitted or empty: every model the
   * upstream lists at /v1/models, refreshed every `refreshMs`.
   */
  models?: string[];
  /** One model served under a name of its own (`modelName`, upstream `upstreamModel`). */
  modelName?: string;
  upstreamModel?: string;
  /** How often the upstream's model list is re-read. Default 30 s. */
  refreshMs?: number;
  /** Called when the served model list or readiness changes (the node re-announces). */
  onModelsChanged?: () => void;
  /** Sent upstream as `Authorization: Bearer …`; never logged. */
  apiKey?: string;
  logger: Logger;
  /** For the health probe and /v1/models only; requests go over Http1Client. */
  fetch?: typeof fetch;
  /**
   * Requests the upstream runs at once; default: its `/props` `total_slots` (llama-server) when
   * it answers at start, else 4.
   */
  slots?: number;
  /** Health probe timeout. Default 2000 ms. */
  healthTimeoutMs?: number;
}

/** Slots assumed for an upstream that states none (llama-server's and Ollama's usual default). */
const DEFAULT_SLOTS = 4;

/** A hostile or broken upstream cannot make this node announce an unbounded list. */
const MAX_UPSTREAM_MODELS = 256;
const MAX_MODEL_NAME_LENGTH = 256;
const MAX_LISTING_BYTES = 1 << 20;

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
  readonly #base: string;
  readonly #options: OpenAiCompatibleBackendOptions;
  readonly #fetch: typeof fetch;
  readonly #client: Http1Client;
  /** The base URL's path ('' or e.g. '/proxy'), put before each request's /v1/... path. */
  readonly #pathPrefix: string;
  readonly #log: Logger;
  #ready = false;
  /** The upstream's parallel slots from its /props, when it states them. */
  #slots: number | undefined;
  /** Fixed names (--backend-model), or undefined to serve whatever the upstream lists. */
  readonly #fixed: string[] | undefined;
  /** What the upstream listed last (name → context length), undefined before a listing. */
  #listed: Map<string, number | undefined> | undefined;
  #refresh: ReturnType<typeof setInterval> | undefined;

  constructor(options: OpenAiCompatibleBackendOptions) {
    this.#options = options;
    this.#base = normalizeBaseUrl(options.baseUrl);
    const fixed = options.modelName !== undefined ? [options.modelName] : options.models;
    this.#fixed = fixed && fixed.length > 0 ? [...new Set(fixed)] : undefined;
    this.#fetch = options.fetch ?? fetch;
    // Kept-alive connections: a routed request should not pay for a TCP handshake.
    const base = new URL(this.#base);
    this.#client = new Http1Client({ origin: base.origin });
    this.#pathPrefix = base.pathname.replace(/\/+$/, '');
    this.#log = options.logger;
  }

  models(): ModelInfo[] {
    const slots = this.#options.slots ?? this.#slots ?? DEFAULT_SLOTS;
    const listed = this.#listed;
    if (this.#fixed) {
      return this.#fixed.map((name) => {
        const upstream = this.#upstreamName(name);
        return {
          name,
          contextLength: listed?.get(upstream) ?? (listed?.size === 1 ? [...listed.values()][0] : undefined),
          // Served even when the upstream does not list it (some servers list nothing useful).
          ready: this.#ready,
          slots,
        };
      });
    }
    return [...(listed ?? new Map<string, number | undefined>())].map(([name, contextLength]) => ({
      name,
      contextLength,
      ready: this.#ready,
      slots,
    }));
  }

  /**
   * Does not require the upstream to be up yet (it may start after this node); requests fail
   * with UpstreamError until it is. Learns the models (and context lengths) from /v1/models.
   */
  async start(): Promise<void> {
    this.#ready = true;
    const reachable = await this.#refreshModels();
    if (!reachable) {
      this.#log.warn({ url: this.#base }, 'OpenAI-compatible backend not reachable yet');
    }
    if (this.#options.slots === undefined && reachable) {
      const props = await this.#probe('/props');
      const total = props?.ok
        ? ((await props.json().catch(() => undefined)) as { total_slots?: unknown })
        : undefined;
      if (
        typeof total?.total_slots === 'number' &&
        Number.isInteger(total.total_slots) &&
        total.total_slots > 0
      )
        this.#slots = total.total_slots;
    }
    const every = this.#options.refreshMs ?? 30_000;
    this.#refresh = setInterval(() => void this.#refreshModels(), every);
    this.#refresh.unref();
  }

  async stop(): Promise<void> {
    this.#ready = false;
    clearInterval(this.#refresh);
    this.#refresh = undefined;
    this.#client.close();
  }

  /** Re-reads /v1/models; true when the upstream answered with a listing. */
  async #refreshModels(): Promise<boolean> {
    const res = await this.#probe('/v1/models');
    if (!res?.ok) return false;
    const listing = await readListing(res);
    if (!listing) return false;
    const before = JSON.stringify([...(this.#listed ?? [])]);
    this.#listed = listing;
    if (this.#ready && JSON.stringify([...listing]) !== before) {
      this.#log.info({ url: this.#base, models: listing.size }, 'backend model list changed');
      this.#options.onModelsChanged?.();
    }
    return true;
  }

  async healthy(): Promise<boolean> {
    for (const path of ['/v1/models', '/health']) {
      const res = await this.#probe(path);
      if (res?.ok) return true;
    }
    return false;
  }

  /** The upstream name of a model this backend serves; anything else is refused. */
  #admit(requested: unknown): string {
    // One model under a name of its own: whatever reached this backend runs as that model.
    const single = this.#options.modelName;
    if (single !== undefined) return this.#upstreamName(single);
    if (typeof requested !== 'string' || !this.models().some((m) => m.name === requested)) {
      throw new ModelNotFoundError(String(requested).slice(0, 128));
    }
    return this.#upstreamName(requested);
  }

  #upstreamName(name: string): string {
    return name === this.#options.modelName ? (this.#options.upstreamModel ?? name) : name;
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
      body = canonicalRequestBody(request.body, this.#admit(request.body.model));
    } catch (error) {
      if (!(error instanceof MeshError)) throw error;
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

/**
 * The upstream's /v1/models as name → context length, bounded in bytes, entries and name
 * length; undefined when it is not an OpenAI model list.
 */
async function readListing(res: Response): Promise<Map<string, number | undefined> | undefined> {
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > MAX_LISTING_BYTES) {
    await res.body?.cancel().catch(() => {});
    return undefined;
  }
  let listing: unknown;
  try {
    const text = await res.text();
    if (text.length > MAX_LISTING_BYTES) return undefined;
    listing = JSON.parse(text);
  } catch {
    return undefined;
  }
  const data = (listing as { data?: unknown } | undefined)?.data;
  if (!Array.isArray(data)) return undefined;
  const models = new Map<string, number | undefined>();
  for (const entry of data as Record<string, unknown>[]) {
    if (models.size >= MAX_UPSTREAM_MODELS) break;
    const id = entry?.id;
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_MODEL_NAME_LENGTH) continue;
    models.set(id, contextLengthOf(entry));
  }
  return models;
}

/** Context length as llama-server (meta.n_ctx_train), vLLM (max_model_len) or others report it. */
function contextLengthOf(entry: Record<string, unknown>): number | undefined {
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
