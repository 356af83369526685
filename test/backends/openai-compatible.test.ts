import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { normalizeBaseUrl, OpenAiCompatibleBackend } from '../../src/backends/openai-compatible.ts';
import { ConfigError, UpstreamError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import type { OpenAiRequest } from '../../src/openai/request.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { json, type Obj, parseSse, readSse, request } from './sse-util.ts';

const never = new AbortController().signal;
const MARKER = 'MARKER-7f3a';

/** A port that was free a moment ago: connecting to it is refused. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs `use` with a backend pointed at `server` (listening on loopback), then stops both. */
async function withBackendOn(server: HttpServer, use: (backend: OpenAiCompatibleBackend) => Promise<void>) {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const backend = new OpenAiCompatibleBackend({
    baseUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    modelName: 'm',
    logger: silentLogger(),
  });
  try {
    await use(backend);
  } finally {
    await backend.stop();
    server.close();
  }
}

describe('OpenAiCompatibleBackend against the fake server', () => {
  let fake: FakeOpenAiServer;
  const seen: Array<{ body: Obj; path: string; headers: Record<string, unknown> }> = [];
  let backend: OpenAiCompatibleBackend;

  before(async () => {
    fake = await startFakeOpenAi({
      reply: `${MARKER} one two three four`,
      tokenDelayMs: 15,
      model: 'upstream-name',
      onRequest: (body, info) => seen.push({ body: body as Obj, path: info.path, headers: info.headers }),
    });
    backend = new OpenAiCompatibleBackend({
      baseUrl: `${fake.url}/v1/`,
      modelName: 'public-name',
      upstreamModel: 'upstream-name',
      apiKey: 'sk-test-secret',
      logger: silentLogger(),
    });
    await backend.start();
  });

  after(async () => {
    await backend?.stop();
    await fake?.close();
  });

  it('describes itself and learns the context length from /v1/models', () => {
    assert.equal(backend.kind, 'openai-compatible');
    assert.equal(backend.plaintextBoundary, 'external-backend');
    // No `/props` on this server and no `slots` option: the usual default of 4.
    assert.deepEqual(backend.models(), [{ name: 'public-name', contextLength: 4096, ready: true, slots: 4 }]);
  });

  it('passes a non-streamed chat through, rewriting the model and adding the API key', async () => {
    const before = fake.requests;
    const res = await backend.handle(
      request('/v1/chat/completions', { model: 'public-name', messages: [{ role: 'user', content: 'hi' }] }),
      never,
    );
    assert.equal(res.status, 200);
    const body = await json(res);
    assert.equal(body.choices[0].message.content, `${MARKER} one two three four`);
    assert.equal(body.usage.completion_tokens, 5);
    assert.equal(fake.requests, before + 1);
    const last = seen.at(-1)!;
    assert.equal(last.path, '/v1/chat/completions');
    assert.equal(last.body.model, 'upstream-name');
    assert.equal(last.headers.authorization, 'Bearer sk-test-secret');
    assert.equal(last.headers.cookie, undefined);
  });

  it('streams the answer through as it arrives', async () => {
    const res = await backend.handle(
      request('/v1/chat/completions', {
        model: 'public-name',
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'hi' }],
      }),
      never,
    );
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
    for (const h of ['transfer-encoding', 'connection', 'keep-alive'])
      assert.equal(res.headers[h], undefined);
    const { events, done } = await readSse(res.body);
    assert.equal(done, true);
    const text = events.map((e) => e.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, `${MARKER} one two three four`);
    assert.equal(events.at(-1)!.usage.completion_tokens, 5);
  });

  it('hands over the first tokens of a long stream long before it ends', async () => {
    // 10 000 tokens at 20 ms take over three minutes: a buffering relay would time this test out.
    const slow = await startFakeOpenAi({ tokens: 10_000, tokenDelayMs: 20 });
    try {
      const relay = new OpenAiCompatibleBackend({
        baseUrl: slow.url,
        modelName: 'fake-model',
        logger: silentLogger(),
      });
      const res = await relay.handle(
        request('/v1/chat/completions', { stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        never,
      );
      let text = '';
      for await (const chunk of res.body) {
        text += Buffer.from(chunk).toString('utf8');
        if (parseSse(text.slice(0, text.lastIndexOf('\n\n') + 2)).events.length >= 4) break;
      }
      const { events, done } = parseSse(text.slice(0, text.lastIndexOf('\n\n') + 2));
      assert.equal(done, false);
      assert.equal(events[0]!.choices[0].delta.role, 'assistant');
      assert.equal(events[1]!.choices[0].delta.content, 'tok0');
    } finally {
      await slow.close();
    }
  });

  it('passes completions and embeddings through', async () => {
    const completion = await json(
      await backend.handle(request('/v1/completions', { model: 'public-name', prompt: 'x' }), never),
    );
    assert.equal(completion.object, 'text_completion');
    assert.ok(completion.choices[0].text.includes(MARKER));
    const embeddings = await json(
      await backend.handle(request('/v1/embeddings?x=1', { model: 'public-name', input: ['a', 'b'] }), never),
    );
    assert.equal(embeddings.data.length, 2);
    assert.equal(seen.at(-1)!.body.model, 'upstream-name');
  });

  it("relays the upstream's own errors with their status", async () => {
    // Not valid by this node's rules: built by hand to see the upstream's own answer.
    const invalid = { path: '/v1/chat/completions', body: { model: 'public-name' } } as OpenAiRequest;
    const res = await backend.handle(invalid, never);
    assert.equal(res.status, 400);
    assert.equal((await json(res)).error.code, 'missing_messages');
  });

  it('stops the upstream stream on abort', async () => {
    const controller = new AbortController();
    const res = await backend.handle(
      request('/v1/chat/completions', { stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      controller.signal,
    );
    const chunks: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const chunk of res.body) {
          chunks.push(chunk.byteLength);
          controller.abort();
        }
      })(),
      { name: 'AbortError' },
    );
    assert.equal(chunks.length, 1);
  });

  it('reports health', async () => {
    assert.equal(await backend.healthy(), true);
  });
});

describe('OpenAiCompatibleBackend without an upstream', () => {
  it('passes the body through byte for byte when no model rewrite is needed', async () => {
    let raw: unknown;
    const fake = await startFakeOpenAi({ tokens: 3, onRequest: (body) => (raw = body) });
    try {
      const backend = new OpenAiCompatibleBackend({
        baseUrl: fake.url,
        modelName: 'fake-model',
        logger: silentLogger(),
      });
      await backend.start();
      const body = { model: 'fake-model', messages: [{ role: 'user', content: 'x' }], extra_field: [1, 2] };
      const res = await backend.handle(request('/v1/chat/completions', body), never);
      assert.equal((await json(res)).usage.completion_tokens, 3);
      assert.deepEqual(raw, body);
    } finally {
      await fake.close();
    }
  });

  it('throws UpstreamError when the server is unreachable, and reports unhealthy', async () => {
    const port = await deadPort();
    const backend = new OpenAiCompatibleBackend({
      baseUrl: `http://127.0.0.1:${port}`,
      modelName: 'gone',
      logger: silentLogger(),
      healthTimeoutMs: 500,
    });
    await backend.start(); // an upstream that starts later must not stop this node from starting
    assert.equal(backend.models()[0]!.ready, true);
    assert.equal(await backend.healthy(), false);
    await assert.rejects(
      backend.handle(request('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] }), never),
      (err: unknown) => err instanceof UpstreamError && err.code === 'upstream_unreachable',
    );
  });

  it('gives up on a health probe that hangs', async () => {
    const hanging: typeof fetch = (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(init.signal?.reason));
      });
    const backend = new OpenAiCompatibleBackend({
      baseUrl: 'http://127.0.0.1:9',
      modelName: 'slow',
      logger: silentLogger(),
      fetch: hanging,
      healthTimeoutMs: 50,
    });
    assert.equal(await backend.healthy(), false);
  });

  it('turns a connection lost mid-stream into UpstreamError', async () => {
    // A server that starts an SSE answer, then drops the connection.
    const server = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {}\n\n', () => setTimeout(() => res.socket?.destroy(), 20));
    });
    await withBackendOn(server, async (backend) => {
      const res = await backend.handle(
        request('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }),
        never,
      );
      assert.equal(res.status, 200);
      await assert.rejects(readSse(res.body), UpstreamError);
    });
  });

  it('decodes a compressed answer from a server that ignores accept-encoding: identity', async () => {
    let acceptEncoding: string | undefined;
    const server = createHttpServer((req, res) => {
      acceptEncoding = req.headers['accept-encoding'];
      const body = gzipSync(JSON.stringify({ id: 'x', choices: [] }));
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-encoding': 'gzip',
        'content-length': body.byteLength,
      });
      res.end(body);
    });
    await withBackendOn(server, async (backend) => {
      const res = await backend.handle(
        request('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }),
        never,
      );
      assert.equal(acceptEncoding, 'identity');
      assert.equal(res.headers['content-encoding'], undefined);
      assert.equal(res.headers['content-length'], undefined);
      assert.deepEqual(await json(res), { id: 'x', choices: [] });
    });
  });

  it('normalizes base URLs and rejects bad ones', () => {
    assert.equal(normalizeBaseUrl('http://h:1'), 'http://h:1');
    assert.equal(normalizeBaseUrl('http://h:1/'), 'http://h:1');
    assert.equal(normalizeBaseUrl('http://h:1/v1'), 'http://h:1');
    assert.equal(normalizeBaseUrl('http://h:1/v1/'), 'http://h:1');
    assert.equal(normalizeBaseUrl('https://h/proxy/v1'), 'https://h/proxy');
    assert.throws(() => normalizeBaseUrl('not a url'), ConfigError);
    assert.throws(() => normalizeBaseUrl('ftp://h/'), ConfigError);
  });
});
