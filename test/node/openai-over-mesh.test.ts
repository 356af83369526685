import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { startFakeOpenAi } from '../helpers/fake-openai-server.ts';

/**
 * The OpenAI surface through a 2-node mesh, with the official `openai` client, run twice:
 * once sealed end to end (the host advertises an inference key) and once in plaintext (a host
 * without one). Both must behave identically: one response path.
 */
for (const e2e of [true, false]) {
  describe(`OpenAI API through a remote host (${e2e ? 'encrypted' : 'plaintext'})`, () => {
    const cluster = new TestCluster();
    let fake: Awaited<ReturnType<typeof startFakeOpenAi>>;
    let client: MeshNode;
    let openai: OpenAI;

    before(async () => {
      fake = await startFakeOpenAi({ tokens: 12, model: 'fake-model' });
      const host = await cluster.start('host', { backend: { url: fake.url, model: 'fake-model' }, e2e });
      client = await cluster.start('client', { client: true, join: [host.mesh.inviteToken()] });
      await waitUntil(() => seesModel(client, 'fake-model'), 'client to learn the host model');
      openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    });
    after(async () => {
      await cluster.stopAll();
      await fake.close();
    });

    test('models list shows the remote model', async () => {
      const models = await openai.models.list();
      assert.ok(models.data.some((m) => m.id === 'fake-model'));
    });

    test('chat completion, non-streamed, reports the route and usage', async () => {
      const raw = await openai.chat.completions
        .create({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] })
        .withResponse();
      assert.equal(raw.response.headers.get('x-mesh-e2e'), e2e ? 'encrypted' : 'plaintext');
      assert.notEqual(raw.response.headers.get('x-mesh-host'), 'local');
      assert.equal(raw.data.object, 'chat.completion');
      assert.ok((raw.data.usage?.completion_tokens ?? 0) > 0);
      assert.ok((raw.data.choices[0]?.message.content ?? '').length > 0);
    });

    test('chat completion, streamed, arrives as many chunks with usage', async () => {
      const stream = await openai.chat.completions.create({
        model: 'fake-model',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let contentChunks = 0;
      let usage: OpenAI.CompletionUsage | undefined | null;
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) contentChunks++;
        if (chunk.usage) usage = chunk.usage;
      }
      assert.ok(contentChunks >= 10, `expected token chunks, got ${contentChunks}`);
      assert.ok((usage?.completion_tokens ?? 0) > 0);
    });

    test('responses API, non-streamed and streamed', async () => {
      const response = await openai.responses.create({ model: 'fake-model', input: 'hi' });
      // The fake backend always stops on its token budget (finish_reason "length").
      assert.equal(response.status, 'incomplete');
      assert.ok(response.output_text.length > 0);
      assert.ok((response.usage?.output_tokens ?? 0) > 0);

      const stream = await openai.responses.create({ model: 'fake-model', input: 'hi', stream: true });
      let deltas = 0;
      let finished = false;
      for await (const event of stream) {
        if (event.type === 'response.output_text.delta') deltas++;
        if (event.type === 'response.incomplete') finished = true;
      }
      assert.ok(deltas >= 10);
      assert.ok(finished);
    });

    test('completions and embeddings pass through', async () => {
      const completion = await openai.completions.create({
        model: 'fake-model',
        prompt: 'hi',
        max_tokens: 5,
      });
      assert.equal(completion.object, 'text_completion');
      const embeddings = await openai.embeddings.create({ model: 'fake-model', input: ['a', 'b'] });
      assert.equal(embeddings.data.length, 2);
    });
  });
}

describe('bad input gets an OpenAI error and the node keeps serving', () => {
  const cluster = new TestCluster();
  let node: MeshNode;
  let fake: Awaited<ReturnType<typeof startFakeOpenAi>>;

  before(async () => {
    fake = await startFakeOpenAi({ tokens: 3, model: 'm' });
    node = await cluster.start('solo', { backend: { url: fake.url, model: 'm' }, maxBodyBytes: 64 * 1024 });
  });
  after(async () => {
    await cluster.stopAll();
    await fake.close();
  });

  const post = (path: string, body: string | Uint8Array, method = 'POST') =>
    fetch(`${node.apiUrl}${path}`, { method, headers: { 'content-type': 'application/json' }, body });

  const cases: [string, () => Promise<Response>, number, string][] = [
    ['malformed JSON', () => post('/v1/chat/completions', '{"model": "m", '), 400, 'invalid_request_error'],
    ['missing messages', () => post('/v1/chat/completions', '{"model":"m"}'), 400, 'invalid_request_error'],
    [
      'unknown model',
      () =>
        post(
          '/v1/chat/completions',
          JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
        ),
      404,
      'invalid_request_error',
    ],
    [
      'oversized body',
      () => post('/v1/chat/completions', Buffer.alloc(200 * 1024, 0x20)),
      413,
      'invalid_request_error',
    ],
    ['wrong method', () => fetch(`${node.apiUrl}/v1/chat/completions`), 405, 'invalid_request_error'],
    ['unknown path', () => post('/v1/nothing-here', '{}'), 404, 'invalid_request_error'],
  ];
  for (const [name, send, status, type] of cases) {
    test(name, async () => {
      const response = await send();
      assert.equal(response.status, status);
      const body = (await response.json()) as { error: { message: string; type: string; code: string } };
      assert.equal(body.error.type, type);
      assert.equal(typeof body.error.message, 'string');
      assert.equal(typeof body.error.code, 'string');
      const ok = await post(
        '/v1/chat/completions',
        JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
      );
      assert.equal(ok.status, 200, 'the node still serves after bad input');
      await ok.arrayBuffer();
    });
  }
});
