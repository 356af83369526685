import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import OpenAI from 'openai';
import { spawnNode } from '../../bench/lib/node-process.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { startFakeOpenAi } from '../helpers/fake-openai-server.ts';

describe('3-node mesh: client reaches an in-process llama.cpp host only through a relay', () => {
  const cluster = new TestCluster();
  after(() => cluster.stopAll());

  test('streamed and non-streamed chat over the relay circuit, sealed end to end', async () => {
    const relay = await cluster.start('relay', { relay: true });
    const token = relay.mesh.inviteToken();
    const host = await cluster.start('host', {
      join: [token],
      reachableOnlyViaRelay: true,
      model: { path: await cluster.tinyModel(), name: 'tiny', threads: 1, contextSize: 256 },
    });
    const client = await cluster.start('client', { client: true, join: [token] });
    await waitUntil(() => seesModel(client, 'tiny'), 'client to learn the relay-only host');
    const openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });

    const { data: stream, response } = await openai.chat.completions
      .create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'hello' }],
        max_tokens: 12,
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    assert.equal(response.headers.get('x-mesh-host'), host.endpointId);
    assert.equal(response.headers.get('x-mesh-path'), 'relay');
    assert.equal(response.headers.get('x-mesh-e2e'), 'encrypted');
    let chunks = 0;
    let completionTokens = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) chunks++;
      if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    }
    assert.ok(chunks > 1, 'tokens arrive as separate chunks');
    assert.ok(completionTokens > 0 && completionTokens <= 12);

    const completion = await openai.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 8,
    });
    assert.ok((completion.usage?.completion_tokens ?? 0) > 0);

    const response2 = await openai.responses.create({ model: 'tiny', input: 'hello', max_output_tokens: 8 });
    assert.ok((response2.usage?.output_tokens ?? 0) > 0);
  });
});

describe('faults', () => {
  const cluster = new TestCluster();
  const closers: (() => Promise<void>)[] = [];
  after(async () => {
    for (const close of closers) await close();
    await cluster.stopAll();
  });

  test('a host killed mid-stream ends the stream with an error quickly; the node keeps serving', async () => {
    const slow = await startFakeOpenAi({ tokens: 400, tokenDelayMs: 20, model: 'shared' });
    const fast = await startFakeOpenAi({ tokens: 5, model: 'shared' });
    closers.push(slow.close, fast.close);
    const client = await cluster.start('client', { client: true });
    // The doomed host is a separate process so it can really be killed (SIGKILL, no goodbye).
    const doomed = await spawnNode([
      '--backend',
      slow.url,
      '--backend-model',
      'shared',
      '--join',
      client.mesh.inviteToken(),
    ]);
    closers.push(() => doomed.stop('SIGKILL'));
    await waitUntil(() => seesModel(client, 'shared'), 'client to learn the doomed host');

    const openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await openai.chat.completions.create({
      model: 'shared',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let received = 0;
    let killedAt = 0;
    await assert.rejects(async () => {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) received++;
        if (received === 5) {
          killedAt = Date.now();
          doomed.child.kill('SIGKILL');
        }
      }
    });
    assert.ok(received >= 5 && received < 400, `the stream broke off (got ${received} chunks)`);
    assert.ok(Date.now() - killedAt < 15_000, 'the error arrived within seconds');

    // The client node is still serving: a second host for the same model answers.
    const backup = await cluster.start('backup', {
      backend: { url: fast.url, model: 'shared' },
      join: [client.mesh.inviteToken()],
    });
    await waitUntil(
      () =>
        client.router
          .listModels()
          .find((m) => m.id === 'shared')
          ?.hosts.includes(backup.endpointId) ?? false,
      'client to learn the backup host',
    );
    const completion = await openai.chat.completions.create({
      model: 'shared',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(completion.object, 'chat.completion');
  });

  test('a peer that leaves and returns is used again', async () => {
    const fake = await startFakeOpenAi({ tokens: 3, model: 'comeback' });
    closers.push(fake.close);
    const client = await cluster.start('client2', { client: true });
    const hostConfig = { backend: { url: fake.url, model: 'comeback' }, join: [client.mesh.inviteToken()] };
    const host = await cluster.start('host2', hostConfig);
    await waitUntil(() => seesModel(client, 'comeback'), 'client to learn the host');
    await cluster.stopNode(host);
    await waitUntil(() => !seesModel(client, 'comeback'), 'client to notice the host left');
    const openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    await assert.rejects(
      openai.chat.completions.create({ model: 'comeback', messages: [{ role: 'user', content: 'hi' }] }),
      (error: unknown) => error instanceof OpenAI.NotFoundError,
    );

    const returned = await cluster.start('host2', hostConfig); // same data dir: same identity
    assert.equal(returned.endpointId, host.endpointId);
    await waitUntil(() => seesModel(client, 'comeback'), 'client to see the host again');
    const completion = await openai.chat.completions.create({
      model: 'comeback',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(completion.object, 'chat.completion');
  });
});
