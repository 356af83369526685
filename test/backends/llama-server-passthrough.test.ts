import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import {
  cachedLlamaServer,
  type LlamaServer,
  llamaServerBinary,
  startLlamaServer,
} from '../../bench/lib/llama-server.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';

/**
 * The pass-through backend against llama.cpp's real `llama-server` (built from the source
 * node-llama-cpp ships by scripts/build-llama-server.sh): the host learns the model from the
 * server's /v1/models and a remote client streams through it, sealed end to end. Skipped, with
 * the reason, when the build is not there (it takes about 10 minutes on 2 cores).
 */
const binary = await llamaServerBinary({ build: false });
const skip = binary
  ? false
  : `llama-server is not built (${cachedLlamaServer()} missing): run scripts/build-llama-server.sh`;

describe('pass-through backend against a real llama-server', { skip }, () => {
  const cluster = new TestCluster();
  let server: LlamaServer;
  before(async () => {
    const model = await cluster.tinyModel();
    server = await startLlamaServer({
      binary: binary!,
      model,
      threads: 1,
      parallel: 2,
      contextSize: 256,
      alias: 'real-tiny',
    });
  });
  after(async () => {
    await cluster.stopAll();
    await server?.stop();
  });

  test('the upstream model is listed, announced and streamed through a remote node', async () => {
    const host = await cluster.start('real-host', { backend: { url: server.url } });
    const client = await cluster.start('real-client', { client: true, join: [host.mesh.inviteToken()] });
    await waitUntil(() => seesModel(client, 'real-tiny'), 'the client to learn the llama-server model');
    const listed = host.status().node.hosting?.models.find((m) => m.name === 'real-tiny');
    assert.equal(listed?.backend, 'openai-compatible');
    assert.ok((listed?.contextLength ?? 0) > 0, 'context length learned from /v1/models');

    const openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    const { data: stream, response } = await openai.chat.completions
      .create({
        model: 'real-tiny',
        messages: [{ role: 'user', content: 'hello' }],
        max_tokens: 8,
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    assert.equal(response.headers.get('x-mesh-host'), host.endpointId);
    assert.equal(response.headers.get('x-mesh-e2e'), 'encrypted');
    let chunks = 0;
    let completionTokens: number | undefined;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) chunks++;
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
    assert.ok(chunks > 0, 'content streamed');
    // The tiny model never ends by itself: a usage report, when the server sends one, says 8.
    if (completionTokens !== undefined) assert.equal(completionTokens, 8);

    const plain = await openai.chat.completions.create({
      model: 'real-tiny',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 4,
    });
    assert.equal(plain.usage?.completion_tokens, 4);
  });
});
