import type { UpstreamResponse } from '../http/exchange.ts';
import { label, type NodeMetrics, type RouteLabel } from '../metrics/node-metrics.ts';
import { errorBody } from '../openai/errors.ts';
import type { InferenceDispatcher } from './openai-routes.ts';

/** The label for a model the node does not list: a client-chosen string never becomes a label. */
const UNLISTED_MODEL = 'unlisted';
/** A chat delta's or a completion's text field holding at least one character. */
const NON_EMPTY_CONTENT = /"(content|text)":"(?!")/;
/** An SSE line longer than this is not inspected for usage (the answer still passes through). */
const MAX_SSE_LINE = 64 * 1024;

/**
 * Wraps the dispatcher the OpenAI routes use so every inference request is counted by model,
 * route and status, timed to its first and last byte, and its tokens added up. The answer's
 * bytes pass through untouched; only usage numbers and content-chunk counts are read.
 */
export function observeDispatch(dispatcher: InferenceDispatcher, metrics: NodeMetrics): InferenceDispatcher {
  return {
    listModels: () => dispatcher.listModels(),
    async dispatch(model, request, options) {
      const started = performance.now();
      const name = dispatcher.listModels().some((m) => m.id === model) ? label(model) : UNLISTED_MODEL;
      metrics.inFlight.inc({ model: name });
      let response: UpstreamResponse;
      try {
        response = await dispatcher.dispatch(model, request, options);
      } catch (error) {
        metrics.inFlight.dec({ model: name });
        metrics.requests.inc({ model: name, route: 'none', status: String(errorBody(error).status) });
        throw error;
      }
      const route = routeLabel(response.headers['x-mesh-path']);
      metrics.requests.inc({ model: name, route, status: String(response.status) });
      return {
        ...response,
        body: observeBody(response.body, { metrics, model: name, route, started, stream: options.stream }),
      };
    },
  };
}

async function* observeBody(
  body: AsyncIterable<Uint8Array>,
  ctx: { metrics: NodeMetrics; model: string; route: RouteLabel; started: number; stream: boolean },
): AsyncIterable<Uint8Array> {
  const { metrics, model, route } = ctx;
  const usage = ctx.stream ? new SseUsage() : new JsonUsage();
  let firstAt: number | undefined;
  try {
    for await (const chunk of body) {
      if (firstAt === undefined) {
        firstAt = performance.now();
        metrics.ttft.observe({ model, route }, (firstAt - ctx.started) / 1000);
      }
      usage.push(chunk);
      yield chunk;
    }
  } finally {
    const end = performance.now();
    metrics.inFlight.dec({ model });
    metrics.latency.observe({ model, route }, (end - ctx.started) / 1000);
    const counts = usage.result();
    if (counts.prompt > 0) metrics.tokens.inc({ model, kind: 'prompt' }, counts.prompt);
    if (counts.completion > 0) {
      metrics.tokens.inc({ model, kind: 'completion' }, counts.completion);
      if (firstAt !== undefined) metrics.generationSeconds.inc({ model }, (end - firstAt) / 1000);
    }
  }
}

interface UsageCounts {
  prompt: number;
  completion: number;
}

function usageOf(value: unknown): UsageCounts | undefined {
  const usage = (value as { usage?: Record<string, unknown> } | null)?.usage;
  if (!usage || typeof usage !== 'object') return undefined;
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
  return {
    prompt: n(usage.prompt_tokens ?? usage.input_tokens),
    completion: n(usage.completion_tokens ?? usage.output_tokens),
  };
}

/** A whole JSON answer: its usage block, if any. */
class JsonUsage {
  readonly #chunks: Uint8Array[] = [];
  push(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
  }
  result(): UsageCounts {
    try {
      return (
        usageOf(JSON.parse(Buffer.concat(this.#chunks).toString('utf8'))) ?? { prompt: 0, completion: 0 }
      );
    } catch {
      return { prompt: 0, completion: 0 };
    }
  }
}

/** An SSE stream: the usage event when the client asked for one, else one token per content chunk. */
class SseUsage {
  readonly #decoder = new TextDecoder();
  #pending = '';
  #contentChunks = 0;
  #usage: UsageCounts | undefined;

  push(chunk: Uint8Array): void {
    const lines = (this.#pending + this.#decoder.decode(chunk, { stream: true })).split('\n');
    this.#pending = lines.pop() ?? '';
    if (this.#pending.length > MAX_SSE_LINE) this.#pending = '';
    for (const line of lines) this.#line(line);
  }

  #line(line: string): void {
    if (!line.startsWith('data:')) return;
    // Only the usage event is parsed; a token chunk is recognised by its non-empty content
    // string, so counting costs no JSON parse per token.
    if (line.includes('"usage":{')) {
      try {
        this.#usage = usageOf(JSON.parse(line.slice(5))) ?? this.#usage;
      } catch {
        // not JSON: nothing to count
      }
    }
    if (NON_EMPTY_CONTENT.test(line)) this.#contentChunks++;
  }

  result(): UsageCounts {
    return this.#usage ?? { prompt: 0, completion: this.#contentChunks };
  }
}

const ROUTES: readonly RouteLabel[] = ['local', 'direct', 'relay', 'forwarded'];

/** The router's x-mesh-path header as a label (anything else: 'none'). */
function routeLabel(path: string | undefined): RouteLabel {
  return ROUTES.find((r) => r === path) ?? 'none';
}
