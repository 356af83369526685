/**
 * A fast fake OpenAI-compatible server on 127.0.0.1:<ephemeral> for tests and benchmarks.
 * It answers instantly (or with `tokenDelayMs` between streamed tokens) and does almost no
 * work per token, so it is never the bottleneck of what is being measured.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeOpenAiOptions {
  /** Completion tokens per answer when no `reply` is set (capped by the request's max_tokens). Default 16. */
  tokens?: number;
  /** Delay between streamed tokens. Default 0 (all chunks written at once, still one SSE event per token). */
  tokenDelayMs?: number;
  /** Model id reported by /v1/models and in answers. Default 'fake-model'. */
  model?: string;
  /** Every model id /v1/models lists (an upstream serving several); default [model]. Mutable. */
  models?: string[];
  /** Fixed answer text, split into word tokens (tests put a marker in it). */
  reply?: string;
  /**
   * Answers generated at once, like llama-server's parallel slots: more wait in a FIFO until
   * one frees (its wait counts toward their time to first token). Default: no limit.
   * GET /props then reports it as `total_slots`.
   */
  slots?: number;
  /** With `slots`: answer 429 (with this Retry-After, in seconds) instead of queueing when every slot is busy. */
  rejectWhenFull?: number;
  /** Called with each parsed POST body (and where it went), before answering. */
  onRequest?: (body: unknown, info: { path: string; headers: IncomingMessage['headers'] }) => void;
}

export interface FakeOpenAiServer {
  url: string;
  port: number;
  /** POST requests served so far. */
  readonly requests: number;
  /** Answers being generated now, and the most at once so far. */
  readonly active: number;
  readonly maxActive: number;
  close(): Promise<void>;
}

const EMBEDDING_DIMS = 8;

export async function startFakeOpenAi(options: FakeOpenAiOptions = {}): Promise<FakeOpenAiServer> {
  const model = options.model ?? 'fake-model';
  const defaultTokens = Math.max(1, options.tokens ?? 16);
  const delay = Math.max(0, options.tokenDelayMs ?? 0);
  const replyPieces = options.reply === undefined ? undefined : splitWords(options.reply);
  const timers = new Set<NodeJS.Timeout>();
  let requests = 0;
  let seq = 0;
  const slots = options.slots ?? Number.POSITIVE_INFINITY;
  let active = 0;
  let maxActive = 0;
  const waiting: (() => void)[] = [];
  /** Runs `start` once a slot is free; the slot frees when the response closes. */
  const withSlot = (res: ServerResponse, start: () => void) => {
    const run = () => {
      if (res.destroyed) return next();
      active++;
      maxActive = Math.max(maxActive, active);
      res.once('close', () => {
        active--;
        next();
      });
      start();
    };
    if (active < slots && waiting.length === 0) run();
    else if (options.rejectWhenFull !== undefined) {
      res.setHeader('retry-after', String(options.rejectWhenFull));
      sendError(res, 429, 'no_capacity', 'Every slot is busy');
    } else waiting.push(run);
  };
  const next = () => {
    if (active < slots) waiting.shift()?.();
  };

  const pieces = (maxTokens: unknown): string[] => {
    if (replyPieces) return replyPieces;
    const cap =
      typeof maxTokens === 'number' && maxTokens > 0 ? Math.floor(maxTokens) : Number.POSITIVE_INFINITY;
    const n = Math.min(defaultTokens, cap);
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = i === 0 ? 'tok0' : ` tok${i}`;
    return out;
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET') {
      if (path === '/v1/models') return sendJson(res, 200, modelsListing(options.models ?? [model]));
      if (path === '/health') return sendJson(res, 200, { status: 'ok' });
      if (path === '/props' && options.slots !== undefined)
        return sendJson(res, 200, { total_slots: options.slots });
      return sendError(res, 404, 'not_found', 'Unknown path');
    }
    if (req.method !== 'POST') return sendError(res, 405, 'method_not_allowed', 'Method not allowed');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
          throw new Error('not an object');
        body = parsed as Record<string, unknown>;
      } catch {
        return sendError(res, 400, 'invalid_json', 'The request body is not valid JSON');
      }
      requests++;
      options.onRequest?.(body, { path, headers: req.headers });
      const id = `fake-${++seq}`;
      const created = Math.floor(Date.now() / 1000);
      const answerModel = typeof body.model === 'string' ? body.model : model;
      switch (path) {
        case '/v1/chat/completions': {
          if (!Array.isArray(body.messages) || body.messages.length === 0) {
            return sendError(res, 400, 'missing_messages', "'messages' must be a non-empty array");
          }
          const promptTokens = countWords(JSON.stringify(body.messages));
          return withSlot(res, () =>
            answer(res, body, pieces(body.max_completion_tokens ?? body.max_tokens), promptTokens, {
              id,
              created,
              model: answerModel,
              chat: true,
            }),
          );
        }
        case '/v1/completions': {
          if (typeof body.prompt !== 'string' && !Array.isArray(body.prompt)) {
            return sendError(res, 400, 'invalid_prompt', "'prompt' is required");
          }
          return withSlot(res, () =>
            answer(res, body, pieces(body.max_tokens), countWords(JSON.stringify(body.prompt)), {
              id,
              created,
              model: answerModel,
              chat: false,
            }),
          );
        }
        case '/v1/embeddings': {
          const inputs = typeof body.input === 'string' ? [body.input] : body.input;
          if (!Array.isArray(inputs) || inputs.length === 0) {
            return sendError(res, 400, 'invalid_input', "'input' is required");
          }
          const tokens = inputs.reduce((n: number, s) => n + countWords(JSON.stringify(s)), 0);
          return sendJson(res, 200, {
            object: 'list',
            model: answerModel,
            data: inputs.map((input, index) => ({
              object: 'embedding',
              index,
              embedding: fakeEmbedding(input),
            })),
            usage: { prompt_tokens: tokens, total_tokens: tokens },
          });
        }
        default:
          return sendError(res, 404, 'not_found', 'Unknown path');
      }
    });
  });

  function answer(
    res: ServerResponse,
    body: Record<string, unknown>,
    words: string[],
    promptTokens: number,
    meta: { id: string; created: number; model: string; chat: boolean },
  ): void {
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: words.length,
      total_tokens: promptTokens + words.length,
    };
    const object = meta.chat ? 'chat.completion' : 'text_completion';
    if (body.stream !== true) {
      const text = words.join('');
      const choice = meta.chat
        ? { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: 'length' }
        : { index: 0, text, logprobs: null, finish_reason: 'length' };
      sendJson(res, 200, {
        id: meta.id,
        object,
        created: meta.created,
        model: meta.model,
        choices: [choice],
        usage,
      });
      return;
    }

    const includeUsage =
      (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    // Everything but the changing text is serialized once per request.
    const head = `data: {"id":"${meta.id}","object":"${meta.chat ? 'chat.completion.chunk' : 'text_completion'}","created":${meta.created},"model":${JSON.stringify(meta.model)},"choices":[`;
    const tail = includeUsage ? ']' + ',"usage":null}\n\n' : ']}\n\n';
    const event = (choice: string) => `${head}${choice}${tail}`;
    const delta = (text: string) =>
      meta.chat
        ? `{"index":0,"delta":{"content":${JSON.stringify(text)}},"finish_reason":null}`
        : `{"index":0,"text":${JSON.stringify(text)},"finish_reason":null}`;
    const finish = meta.chat
      ? '{"index":0,"delta":{},"finish_reason":"length"}'
      : '{"index":0,"text":"","finish_reason":"length"}';
    const end = () => {
      let out = event(finish);
      if (includeUsage) out += `${head}],"usage":${JSON.stringify(usage)}}\n\n`;
      res.end(`${out}data: [DONE]\n\n`);
    };

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (meta.chat)
      res.write(event('{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}'));
    if (delay === 0) {
      for (const w of words) res.write(event(delta(w)));
      end();
      return;
    }
    // Deadlines are absolute, so a busy event loop does not stretch the pace token by token.
    const start = performance.now();
    let i = 0;
    const tick = () => {
      timers.delete(timer);
      if (res.destroyed) return;
      res.write(event(delta(words[i++]!)));
      if (i >= words.length) {
        end();
        return;
      }
      timer = setTimeout(tick, Math.max(0, start + (i + 1) * delay - performance.now()));
      timers.add(timer);
    };
    let timer = setTimeout(tick, delay);
    timers.add(timer);
    res.on('close', () => {
      clearTimeout(timer);
      timers.delete(timer);
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.keepAliveTimeout = 30_000;
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get requests() {
      return requests;
    },
    get active() {
      return active;
    },
    get maxActive() {
      return maxActive;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, {
    error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', code },
  });
}

function modelsListing(models: string[]) {
  return {
    object: 'list',
    data: models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake', context_length: 4096 })),
  };
}

function splitWords(text: string): string[] {
  const out = text.match(/\s*\S+/g) ?? [];
  return out.length > 0 ? out : [text];
}

function countWords(text: string): number {
  return Math.max(1, splitWords(text).length);
}

function fakeEmbedding(input: unknown): number[] {
  const digest = createHash('sha256').update(JSON.stringify(input)).digest();
  return Array.from({ length: EMBEDDING_DIMS }, (_, i) => (digest[i]! - 128) / 128);
}
