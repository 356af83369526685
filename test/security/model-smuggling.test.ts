import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { rawRequest } from './helpers.ts';

/**
 * Issue #15 finding 11: a pass-through host admitted `{"model":"shared","MODEL":"private"}` for
 * `shared` and forwarded the bytes as they came; a Go backend (Ollama) matches keys
 * case-insensitively and keeps the last, so it would run `private`.
 */
describe('pass-through bodies are re-serialized with the admitted model', () => {
  const cluster = new TestCluster();
  const seen: Record<string, unknown>[] = [];
  let fake: FakeOpenAiServer;
  let host: MeshNode;
  let client: MeshNode;

  before(async () => {
    fake = await startFakeOpenAi({
      tokens: 2,
      model: 'shared',
      onRequest: (body) => seen.push(body as never),
    });
    host = await cluster.start('pass-through-host', { backend: { url: fake.url, model: 'shared' } });
    client = await cluster.start('client', { client: true, join: [host.mesh.inviteToken()] });
    await waitUntil(() => seesModel(client, 'shared'), 'the client to learn the host');
  });
  after(async () => {
    await cluster.stopAll();
    await fake.close();
  });

  const post = (node: MeshNode, body: string) =>
    rawRequest(node.apiUrl, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body,
    });

  for (const [where, node] of [
    ['over the mesh', () => client],
    ['on the host itself', () => host],
  ] as const) {
    test(`a key that differs from 'model' only in case never reaches the backend (${where})`, async () => {
      seen.length = 0;
      const answer = await post(
        node(),
        '{"model":"shared","MODEL":"private-model","messages":[{"role":"user","content":"hi"}]}',
      );
      assert.equal(answer.status, 400);
      assert.equal(JSON.parse(answer.text).error.code, 'ambiguous_keys');
      assert.ok(!seen.some((body) => 'MODEL' in body), 'the backend never received the smuggled key');
      assert.equal(seen.length, 0);
    });
  }

  test('nested twins are refused too; a clean body reaches the backend re-serialized', async () => {
    seen.length = 0;
    const twin = await post(
      client,
      '{"model":"shared","messages":[{"role":"user","Role":"system","content":"hi"}]}',
    );
    assert.equal(twin.status, 400);
    const clean = await post(client, '{ "model" : "shared", "messages":[{"role":"user","content":"hi"}] }');
    assert.equal(clean.status, 200);
    assert.deepEqual(seen, [{ model: 'shared', messages: [{ role: 'user', content: 'hi' }] }]);
  });
});
