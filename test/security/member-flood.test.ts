import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type ByteStream, PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { chatBody, rawRequest } from './helpers.ts';

/**
 * Issue #15 finding 7: a member opened 128 streams of 10 MiB to a host and never closed them,
 * taking it from 253 MB to 1.6 GB, held (no read deadline; up to 1,024 streams a connection).
 * Here a member node built from the project's own mesh opens request streams by hand.
 */

/** Reads what the host says on a stream, once; `within(ms)` is its text so far, or 'held'. */
function watch(stream: ByteStream) {
  const chunks: Buffer[] = [];
  let ended: string | undefined;
  const done = (async () => {
    try {
      for await (const chunk of stream.source) chunks.push(Buffer.from(chunk));
      ended = Buffer.concat(chunks).toString('utf8') || 'closed';
    } catch {
      ended = chunks.length > 0 ? Buffer.concat(chunks).toString('utf8') : 'reset';
    }
  })();
  return {
    async within(ms: number): Promise<string> {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
      clearTimeout(timer);
      return ended ?? 'held';
    },
  };
}

describe('a host bounds what one member can make it hold', () => {
  const cluster = new TestCluster();
  let fake: FakeOpenAiServer;
  let host: MeshNode;
  let attacker: MeshNode;
  let honest: MeshNode;

  before(async () => {
    fake = await startFakeOpenAi({ tokens: 2, model: 'shared' });
    host = await cluster.start('host', {
      backend: { url: fake.url, model: 'shared' },
      maxBodyBytes: 1024 * 1024,
      inboundLimits: {
        maxStreamsPerPeer: 8,
        maxBytesInFlight: 8 * 1024 * 1024,
        bodyReadTimeoutMs: 2_000,
        requestWaitMs: 4_000,
      },
    });
    attacker = await cluster.start('attacker', { client: true, join: [host.mesh.inviteToken()] });
    honest = await cluster.start('honest', { client: true, join: [host.mesh.inviteToken()] });
    await waitUntil(
      () =>
        host.mesh.peer(attacker.endpointId) !== undefined && host.mesh.peer(honest.endpointId) !== undefined,
      'the host to know both members',
    );
  });
  after(async () => {
    await cluster.stopAll();
    await fake.close();
  });

  const honestAsk = () =>
    rawRequest(honest.apiUrl, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: chatBody('shared'),
      timeoutMs: 20_000,
    });

  test('streams over the per-peer cap are refused at once; held ones end at the read deadline', async () => {
    const streams: ByteStream[] = [];
    for (let i = 0; i < 20; i++) {
      const stream = await attacker.mesh.openStream(host.endpointId, PROTOCOL_HTTP);
      await stream.write(Buffer.from('P')); // a request that never ends
      streams.push(stream);
    }
    const watched = streams.map(watch);
    const first = await Promise.all(watched.map((w) => w.within(1_000)));
    const refused = first.filter((text) => text.includes('peer_stream_limit'));
    assert.equal(
      refused.length,
      12,
      `refused: ${refused.length}, outcomes: ${[...new Set(first)].join(' | ')}`,
    );
    assert.match(refused[0]!, /^HTTP\/1\.1 429/);
    const answer = await honestAsk();
    assert.equal(answer.status, 200, 'another member is still served');
    assert.equal(first.filter((text) => text === 'held').length, 8);
    const held = watched.filter((_, i) => first[i] === 'held');
    const later = await Promise.all(held.map((w) => w.within(10_000)));
    assert.ok(
      later.every((text) => text !== 'held'),
      `the host cut every held stream at its read deadline: ${later.join(' | ')}`,
    );
  });

  test("bytes over a member's share of the budget are refused; others are still served", async () => {
    // A second member, so nothing the first one still holds counts here.
    const attacker = await cluster.start('attacker-2', { client: true, join: [host.mesh.inviteToken()] });
    await waitUntil(() => host.mesh.peer(attacker.endpointId) !== undefined, 'the host to know the member');
    const mib = Buffer.alloc(1024 * 1024, 0x50);
    const streams: ByteStream[] = [];
    for (let i = 0; i < 4; i++) {
      const stream = await attacker.mesh.openStream(host.endpointId, PROTOCOL_HTTP);
      void stream.write(mib).catch(() => undefined);
      streams.push(stream);
    }
    const results = await Promise.all(streams.map((s) => watch(s).within(1_500)));
    const refused = results.filter((text) => text.includes('peer_byte_limit'));
    assert.equal(refused.length, 2, `outcomes: ${results.map((r) => r.slice(-120)).join(' | ')}`);
    assert.equal((await honestAsk()).status, 200);
  });
});
