import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type ByteStream, PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { chatBody, hostileHttpHandler, rawRequest } from './helpers.ts';

/**
 * Issue #15 finding 3: one non-streamed answer took a client node from 130 MB to 3.2 GB, and a
 * host that never answered kept a request pending for over 90 s with no failover.
 *
 * The client is connected to the hostile host only; the honest host is reachable through it
 * (forwarded), so the hostile one is always tried first.
 */
describe('a client bounds what a hostile host can make it hold or wait for', () => {
  const cluster = new TestCluster();
  let fake: FakeOpenAiServer;
  let hostile: MeshNode;
  let honest: MeshNode;
  let client: MeshNode;
  // One handler whose behaviour each test sets: warm streams opened earlier keep the handler
  // that accepted them, so the handler itself is never swapped.
  let behave: (stream: ByteStream) => Promise<void> = () => new Promise(() => undefined);

  before(async () => {
    fake = await startFakeOpenAi({ tokens: 3, model: 'shared' });
    hostile = await cluster.start('hostile-host', {
      e2e: false,
      backend: { url: fake.url, model: 'shared' },
    });
    hostile.mesh.handle(
      PROTOCOL_HTTP,
      hostileHttpHandler((stream) => behave(stream)),
    );
    honest = await cluster.start('honest-host', {
      join: [hostile.mesh.inviteToken()],
      reachableOnlyViaRelay: true,
      backend: { url: fake.url, model: 'shared' },
    });
    client = await cluster.start('client', {
      client: true,
      join: [hostile.mesh.inviteToken()],
      answerBounds: { maxAnswerBytes: 1024 * 1024, firstByteTimeoutMs: 2_000, idleTimeoutMs: 1_500 },
    });
    await waitUntil(
      () => client.router.listModels().find((m) => m.id === 'shared')?.hosts.length === 2,
      'the client to learn both hosts',
    );
    assert.ok(seesModel(client, 'shared'));
  });
  after(async () => {
    await cluster.stopAll();
    await fake.close();
  });

  const ask = (stream: boolean) =>
    rawRequest(client.apiUrl, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: chatBody('shared', { stream }),
      timeoutMs: 30_000,
    });

  test('a host that never answers is cut off at the first-byte deadline; the next host serves', async () => {
    behave = () => new Promise(() => undefined);
    for (const stream of [false, true]) {
      const started = Date.now();
      const answer = await ask(stream);
      assert.equal(answer.status, 200);
      assert.equal(answer.headers['x-mesh-host'], honest.endpointId);
      assert.ok(Date.now() - started < 20_000, `answered after ${Date.now() - started} ms`);
    }
  });

  test('a non-streamed answer over the cap is refused; the next host serves', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let written = 0;
    behave = async (stream) => {
      await stream.write(Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"x":"'));
      // 64 MiB unless the client stops reading first.
      for (let i = 0; i < 1024; i++) {
        await stream.write(chunk);
        written += chunk.byteLength;
      }
      await stream.closeWrite();
    };
    const answer = await ask(false);
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['x-mesh-host'], honest.endpointId);
    await waitUntil(() => written > 0, 'the hostile host to have written');
    assert.ok(written < 16 * 1024 * 1024, `the client stopped reading early (${written} bytes written)`);
  });

  test('a streamed answer that stalls ends with an error event at the idle deadline', async () => {
    behave = async (stream) => {
      await stream.write(
        Buffer.from(
          'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n' +
            'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
        ),
      );
      await new Promise(() => undefined);
    };
    const started = Date.now();
    const answer = await ask(true);
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['x-mesh-host'], hostile.endpointId);
    assert.match(answer.text, /"content":"a"/);
    assert.match(answer.text, /upstream_timeout/);
    assert.ok(Date.now() - started < 20_000);
    // The node keeps serving.
    behave = () => new Promise(() => undefined);
    assert.equal((await ask(false)).status, 200);
  });
});
