import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeTinyGguf } from '../../src/backends/gguf/tiny-model.ts';
import { LlamaCppBackend } from '../../src/backends/llama-cpp.ts';
import { ConfigError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { json, type Obj, readSse, request } from './sse-util.ts';

const never = new AbortController().signal;
const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'tiny',
  messages: [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'hello world' },
  ],
  max_tokens: 8,
  seed: 42,
  ...extra,
});

describe('LlamaCppBackend on a generated tiny model', () => {
  let dir: string;
  let modelPath: string;
  let backend: LlamaCppBackend;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mesh-llm-backend-'));
    modelPath = join(dir, 'tiny.gguf');
    await writeTinyGguf(modelPath, { seed: 3 });
    backend = new LlamaCppBackend({
      modelPath,
      threads: 1,
      contextSize: 256,
      parallel: 2,
      maxQueue: 1,
      logger: silentLogger(),
    });
    await backend.start();
  });

  after(async () => {
    await backend?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the model, its context length and the file hash', async () => {
    const [info] = backend.models();
    assert.ok(info);
    assert.equal(info.name, 'tiny');
    assert.equal(info.ready, true);
    assert.equal(info.contextLength, 256);
    const expected = createHash('sha256')
      .update(await readFile(modelPath))
      .digest('hex');
    assert.equal(info.identityHash, expected);
    assert.equal(backend.kind, 'llama-cpp');
    assert.equal(backend.plaintextBoundary, 'in-process');
    assert.equal(await backend.healthy(), true);
  });

  it('answers a non-streamed chat completion with usage', async () => {
    const res = await backend.handle(request('/v1/chat/completions', chat()), never);
    assert.equal(res.status, 200);
    const body = await json(res);
    assert.equal(body.object, 'chat.completion');
    assert.equal(body.model, 'tiny');
    assert.match(body.id, /^chatcmpl-/);
    assert.equal(body.choices.length, 1);
    assert.equal(body.choices[0].message.role, 'assistant');
    assert.equal(typeof body.choices[0].message.content, 'string');
    assert.ok(body.usage.prompt_tokens > 5);
    // The tiny model never samples an end token, so it always runs to max_tokens.
    assert.equal(body.usage.completion_tokens, 8);
    assert.equal(body.choices[0].finish_reason, 'length');
    assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens);
  });

  it('streams chat chunks token by token with a usage chunk and [DONE]', async () => {
    const res = await backend.handle(
      request(
        '/v1/chat/completions',
        chat({ stream: true, max_tokens: 24, stream_options: { include_usage: true } }),
      ),
      never,
    );
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
    const { events, done, bodyChunks } = await readSse(res.body);
    assert.equal(done, true);
    assert.ok(bodyChunks >= 5, `expected several body chunks, got ${bodyChunks}`);
    const first = events[0]!;
    assert.equal(first.object, 'chat.completion.chunk');
    assert.equal(first.choices[0].delta.role, 'assistant');
    const contentChunks = events.filter((e) => e.choices?.[0]?.delta?.content);
    assert.ok(contentChunks.length >= 3, `expected several content chunks, got ${contentChunks.length}`);
    const finish = events.filter((e) => e.choices?.[0]?.finish_reason);
    assert.equal(finish.length, 1);
    assert.equal(finish[0]!.choices[0].finish_reason, 'length');
    const usage = events.at(-1)!;
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 24);
    assert.ok(usage.usage.prompt_tokens > 5);
    // With include_usage every other chunk carries usage: null.
    assert.ok(events.slice(0, -1).every((e) => e.usage === null));
  });

  it('streams without a usage chunk unless asked', async () => {
    const res = await backend.handle(request('/v1/chat/completions', chat({ stream: true })), never);
    const { events, done } = await readSse(res.body);
    assert.equal(done, true);
    assert.ok(events.every((e) => e.choices.length === 1 && !('usage' in e)));
  });

  it('serves text completions, streamed and not', async () => {
    const plain = await backend.handle(
      request('/v1/completions', { model: 'tiny', prompt: 'hello world', max_tokens: 6, seed: 1 }),
      never,
    );
    assert.equal(plain.status, 200);
    const body = await json(plain);
    assert.equal(body.object, 'text_completion');
    assert.equal(typeof body.choices[0].text, 'string');
    assert.equal(body.usage.completion_tokens, 6);
    assert.ok(body.usage.prompt_tokens >= 2);

    const streamed = await backend.handle(
      request('/v1/completions', {
        prompt: 'hello',
        max_tokens: 10,
        stream: true,
        stream_options: { include_usage: true },
      }),
      never,
    );
    const { events, done } = await readSse(streamed.body);
    assert.equal(done, true);
    assert.ok(events.every((e) => e.object === 'text_completion'));
    assert.equal(events.at(-1)!.usage.completion_tokens, 10);
    assert.equal(events.at(-2)!.choices[0].finish_reason, 'length');
  });

  it('accepts a pre-tokenized prompt and refuses token ids outside the vocabulary', async () => {
    const ok = await backend.handle(
      request('/v1/completions', { prompt: [1, 270, 271], max_tokens: 2 }),
      never,
    );
    assert.equal(ok.status, 200);
    assert.equal((await json(ok)).usage.prompt_tokens, 3);
    const bad = await backend.handle(
      request('/v1/completions', { prompt: [1, 999999], max_tokens: 2 }),
      never,
    );
    assert.equal(bad.status, 400);
    assert.equal((await json(bad)).error.code, 'invalid_prompt');
  });

  it('computes embeddings for a string and for a list', async () => {
    const one = await json(await backend.handle(request('/v1/embeddings', { input: 'hello world' }), never));
    assert.equal(one.object, 'list');
    assert.equal(one.data.length, 1);
    assert.equal(one.data[0].embedding.length, 64);
    assert.ok(one.data[0].embedding.every((x: unknown) => typeof x === 'number' && Number.isFinite(x)));
    assert.ok(one.usage.prompt_tokens > 0);
    assert.equal(one.usage.total_tokens, one.usage.prompt_tokens);

    const many = await json(
      await backend.handle(
        request('/v1/embeddings', { input: ['a', 'b c', 'hello'], encoding_format: 'base64' }),
        never,
      ),
    );
    assert.deepEqual(
      many.data.map((d: Obj) => d.index),
      [0, 1, 2],
    );
    for (const d of many.data) assert.equal(Buffer.from(d.embedding, 'base64').byteLength, 64 * 4);
  });

  it('keeps concurrent requests apart (more requests than sequences)', async () => {
    const lengths = [7, 11, 13];
    const results = await Promise.all(
      lengths.map(async (n, i) => {
        const res = await backend.handle(
          request(
            '/v1/chat/completions',
            chat({
              max_tokens: n,
              stream: i === 1,
              stream_options: { include_usage: true },
              messages: [{ role: 'user', content: `request ${i}` }],
            }),
          ),
          never,
        );
        assert.equal(res.status, 200);
        if (i === 1) return (await readSse(res.body)).events.at(-1)!.usage;
        return (await json(res)).usage;
      }),
    );
    assert.deepEqual(
      results.map((u) => u.completion_tokens),
      lengths,
    );
    for (const u of results) assert.ok(u.prompt_tokens > 3);
  });

  it('answers 503 no_capacity when every sequence is busy and the queue is full', async () => {
    const controller = new AbortController();
    const body = chat({ stream: true, max_tokens: 200 });
    // handle() reaches the slot pool synchronously: 2 run, 1 waits, the 4th is refused.
    const pending = [0, 1, 2, 3].map(() =>
      backend.handle(request('/v1/chat/completions', body), controller.signal),
    );
    const refused = await pending[3]!;
    assert.equal(refused.status, 503);
    assert.equal((await json(refused)).error.code, 'no_capacity');
    const running = await Promise.all(pending.slice(0, 2));
    const queued = assert.rejects(pending[2]!, { name: 'AbortError' });
    controller.abort();
    for (const res of running) await assert.rejects(readSse(res.body), { name: 'AbortError' });
    await queued;
    // Every sequence is free again.
    const res = await backend.handle(request('/v1/chat/completions', chat({ max_tokens: 3 })), never);
    assert.equal((await json(res)).usage.completion_tokens, 3);
  });

  it('stops generating promptly on abort and frees the sequence', async () => {
    for (let round = 0; round < 3; round++) {
      const controller = new AbortController();
      const res = await backend.handle(
        request('/v1/chat/completions', chat({ stream: true, max_tokens: 200 })),
        controller.signal,
      );
      let chunks = 0;
      await assert.rejects(
        (async () => {
          for await (const _ of res.body) if (++chunks === 3) controller.abort();
        })(),
        { name: 'AbortError' },
      );
      assert.equal(chunks, 3, 'nothing is delivered after the abort');
    }
    // Two sequences, three aborted streams: all freed, so both can run at once.
    const [a, b] = await Promise.all([
      backend.handle(request('/v1/chat/completions', chat({ max_tokens: 4 })), never),
      backend.handle(request('/v1/chat/completions', chat({ max_tokens: 5 })), never),
    ]);
    assert.equal((await json(a!)).usage.completion_tokens, 4);
    assert.equal((await json(b!)).usage.completion_tokens, 5);
  });

  it('frees the sequence when the reader walks away from the stream', async () => {
    for (let round = 0; round < 3; round++) {
      const res = await backend.handle(
        request('/v1/chat/completions', chat({ stream: true, max_tokens: 200 })),
        never,
      );
      for await (const _ of res.body) break;
    }
    const res = await backend.handle(request('/v1/chat/completions', chat({ max_tokens: 2 })), never);
    assert.equal((await json(res)).usage.completion_tokens, 2);
  });

  it('gives the same greedy answer again (reusing the cached prompt prefix changes nothing)', async () => {
    const body = { prompt: 'hello', max_tokens: 40, temperature: 0 };
    const first = await json(await backend.handle(request('/v1/completions', body), never));
    const second = await json(await backend.handle(request('/v1/completions', body), never));
    assert.equal(second.choices[0].text, first.choices[0].text);
    assert.deepEqual(second.usage, first.usage);
  });

  it('applies stop strings without leaking them into the output', async () => {
    const body = { prompt: 'hello', max_tokens: 40, temperature: 0 };
    const full = (await json(await backend.handle(request('/v1/completions', body), never))).choices[0]
      .text as string;
    // Greedy output of a fixed model is fixed: pick a printable pair of characters from its middle.
    const at = Array.from({ length: full.length }, (_, i) => i).find(
      (i) => i >= 3 && /^[\x21-\x7e]{2}$/.test(full.slice(i, i + 2)),
    );
    assert.ok(at !== undefined, 'the greedy output has a printable pair');
    const stop = full.slice(at, at + 2);
    const cut = await json(
      await backend.handle(request('/v1/completions', { ...body, stop: [stop, 'unused'] }), never),
    );
    assert.equal(cut.choices[0].finish_reason, 'stop');
    assert.equal(cut.choices[0].text, full.slice(0, full.indexOf(stop)));
    assert.ok(cut.usage.completion_tokens < 40);
  });

  it('refuses a prompt longer than the context with context_length_exceeded', async () => {
    const long = 'hello world '.repeat(200);
    const res = await backend.handle(
      request('/v1/chat/completions', { messages: [{ role: 'user', content: long }] }),
      never,
    );
    assert.equal(res.status, 400);
    const body = await json(res);
    assert.equal(body.error.code, 'context_length_exceeded');
    assert.equal(body.error.type, 'invalid_request_error');
    assert.ok(!body.error.message.includes('hello'), 'error message must not echo the prompt');

    const emb = await backend.handle(request('/v1/embeddings', { input: long }), never);
    assert.equal(emb.status, 400);
    assert.equal((await json(emb)).error.code, 'context_length_exceeded');
  });

  it('refuses, by name, every parameter it cannot honour (400, never ignored)', async () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['/v1/chat/completions', chat({ n: 2 }), 'n'],
      ['/v1/chat/completions', chat({ logprobs: true }), 'logprobs'],
      ['/v1/chat/completions', chat({ top_logprobs: 2 }), 'top_logprobs'],
      ['/v1/chat/completions', chat({ logit_bias: { '5': 1 } }), 'logit_bias'],
      ['/v1/chat/completions', chat({ audio: { voice: 'x' } }), 'audio'],
      ['/v1/chat/completions', chat({ prediction: { type: 'content', content: 'x' } }), 'prediction'],
      [
        '/v1/chat/completions',
        chat({
          messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x' } }] }],
        }),
        'messages[0].content[0]',
      ],
      ['/v1/completions', { prompt: 'x', echo: true }, 'echo'],
      ['/v1/completions', { prompt: 'x', best_of: 2 }, 'best_of'],
      ['/v1/completions', { prompt: 'x', suffix: 'y' }, 'suffix'],
      ['/v1/completions', { prompt: ['a', 'b'] }, 'prompt'],
      ['/v1/embeddings', { input: 'x', dimensions: 8 }, 'dimensions'],
    ];
    for (const [path, body, param] of cases) {
      const res = await backend.handle(request(path, body), never);
      assert.equal(res.status, 400, `${path} ${JSON.stringify(body)}`);
      const err = (await json(res)).error;
      assert.equal(err.code, 'unsupported_parameter', param);
      assert.equal(err.param, param);
      assert.equal(err.type, 'invalid_request_error');
      assert.ok(err.message.includes(`'${param}'`), err.message);
    }
  });
});

describe('LlamaCppBackend lifecycle', () => {
  it('is not ready before start and after stop', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mesh-llm-backend-'));
    try {
      const modelPath = join(dir, 'life.gguf');
      await writeTinyGguf(modelPath, { seed: 5, contextLength: 128 });
      const backend = new LlamaCppBackend({
        modelPath,
        modelName: 'life',
        threads: 1,
        parallel: 1,
        logger: silentLogger(),
      });
      assert.equal(backend.models()[0]!.ready, false);
      assert.equal(await backend.healthy(), false);
      const early = await backend.handle(request('/v1/chat/completions', chat()), never);
      assert.equal(early.status, 503);
      await backend.start();
      assert.equal(backend.models()[0]!.contextLength, 128, 'defaults to the training context');
      // A stream in flight when stop() is called ends instead of hanging.
      const res = await backend.handle(
        request('/v1/chat/completions', chat({ stream: true, max_tokens: 200 })),
        never,
      );
      const plain = backend.handle(request('/v1/completions', { prompt: 'x', max_tokens: 200 }), never);
      await backend.stop();
      const { events, done } = await readSse(res.body);
      assert.equal(done, false);
      assert.equal(events.at(-1)!.error.code, 'backend_stopped');
      const cut = await plain;
      assert.equal(cut.status, 503);
      assert.equal((await json(cut)).error.code, 'backend_stopped');
      assert.equal(await backend.healthy(), false);
      assert.equal(backend.models()[0]!.ready, false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails to start on a file that is not a model', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mesh-llm-backend-'));
    try {
      const modelPath = join(dir, 'junk.gguf');
      await import('node:fs/promises').then((fs) => fs.writeFile(modelPath, 'not a model'));
      const backend = new LlamaCppBackend({ modelPath, threads: 1, logger: silentLogger() });
      await assert.rejects(backend.start(), ConfigError);
      assert.equal(await backend.healthy(), false);
      await backend.stop();
      const missing = new LlamaCppBackend({ modelPath: join(dir, 'nope.gguf'), logger: silentLogger() });
      await assert.rejects(missing.start(), ConfigError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
