import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type ByteStream, PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { hostileHttpHandler, rawRequest } from './helpers.ts';

/**
 * Issue #15 finding 12 ("no input produces a 500"), for what a hostile host sends back: every
 * malformed answer the client node decodes (JSON for /v1/responses, SSE, HTTP heads) becomes
 * a typed error, never an internal one.
 */
describe('no answer from a hostile host produces a 500', () => {
  const cluster = new TestCluster();
  let fake: FakeOpenAiServer;
  let hostile: MeshNode;
  let client: MeshNode;
  let answer: string;

  before(async () => {
    fake = await startFakeOpenAi({ model: 'shared' });
    hostile = await cluster.start('hostile-host', {
      e2e: false,
      backend: { url: fake.url, model: 'shared' },
    });
    hostile.mesh.handle(
      PROTOCOL_HTTP,
      hostileHttpHandler(async (stream: ByteStream) => {
        await stream.write(Buffer.from(answer));
        await stream.closeWrite();
      }),
    );
    client = await cluster.start('client', { client: true, join: [hostile.mesh.inviteToken()] });
    await waitUntil(
      () => client.router.listModels().some((m) => m.id === 'shared'),
      'the client to see the host',
    );
  });
  after(async () => {
    await cluster.stopAll();
    await fake.close();
  });

  const json = (body: string) => `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n${body}`;
  const sse = (body: string) => `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n${body}`;
  const cases: [string, string][] = [
    ['null completion', json('null')],
    ['array completion', json('[]')],
    ['choices not a list', json('{"choices":"x","usage":7}')],
    ['message not an object', json('{"choices":[{"message":5}]}')],
    ['not JSON', json('garbage')],
    ['no head at all', 'garbage without a head'],
    ['bad status line', 'HTTP/1.1 abc\r\n\r\n'],
    ['SSE garbage', sse('data: {not json}\n\n')],
    ['SSE null chunk', sse('data: null\n\ndata: [DONE]\n\n')],
    ['SSE odd choices', sse('data: {"choices":[{"delta":7}],"usage":"x"}\n\ndata: [DONE]\n\n')],
  ];

  for (const [name, text] of cases) {
    test(`${name}: a typed error for /v1/responses and /v1/chat/completions, streamed or not`, async () => {
      answer = text;
      for (const path of ['/v1/responses', '/v1/chat/completions']) {
        for (const stream of [false, true]) {
          const body =
            path === '/v1/responses'
              ? { model: 'shared', input: 'hi', stream }
              : { model: 'shared', messages: [{ role: 'user', content: 'hi' }], stream };
          const reply = await rawRequest(client.apiUrl, {
            method: 'POST',
            path,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
            timeoutMs: 20_000,
          });
          assert.notEqual(reply.status, 500, `${path} stream=${stream}: ${reply.text.slice(0, 200)}`);
          assert.doesNotMatch(reply.text, /internal_error/, `${path} stream=${stream}`);
        }
      }
    });
  }
});
