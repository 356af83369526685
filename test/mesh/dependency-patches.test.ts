import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { LengthPrefixedDecoder } from '@libp2p/utils';
import type { Libp2pMesh } from '../../src/mesh/libp2p-mesh.ts';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { clusterPerTest, libp2pOf, readAll, waitFor } from './helpers.ts';

const cluster = clusterPerTest();

async function connectedPair(handler: Parameters<Libp2pMesh['handle']>[1]) {
  const client = await cluster().node({ warmStreams: 0 });
  const host = await cluster().node({ warmStreams: 0 });
  host.handle(PROTOCOL_HTTP, handler);
  await host.join(client.inviteToken());
  await waitFor(() => client.peer(host.endpointId) !== undefined, 'host known');
  return { client, host };
}

/**
 * Counts calls to `peerStore.merge` that only record PROTOCOL_HTTP (gossip and attestation
 * streams, opened on their own schedule, record theirs once per connection too).
 */
function countProtocolMerges(node: Libp2pMesh): () => number {
  const peerStore = libp2pOf(node).peerStore;
  const merge = peerStore.merge.bind(peerStore);
  let count = 0;
  peerStore.merge = (peer, data, options) => {
    if (Object.keys(data).length === 1 && data.protocols?.length === 1 && data.protocols[0] === PROTOCOL_HTTP)
      count++;
    return merge(peer, data, options);
  };
  return () => count;
}

test('every dependency patch is in place after npm install', async () => {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [
    join(import.meta.dirname, '../../scripts/patch-dependencies.mjs'),
    '--check',
  ]);
  assert.equal(stdout + stderr, '');
});

test('a stream protocol is recorded in the peer store once per connection, not per stream', async () => {
  const { client, host } = await connectedPair(async (stream) => {
    await readAll(stream.source);
    await stream.closeWrite();
  });
  const clientMerges = countProtocolMerges(client);
  const hostMerges = countProtocolMerges(host);
  for (let i = 0; i < 5; i++) {
    const stream = await client.openStream(host.endpointId, PROTOCOL_HTTP);
    await stream.closeWrite();
    await readAll(stream.source);
  }
  // Once per connection: two nodes that dialled each other at the same moment may hold two.
  const connections = libp2pOf(client).getConnections().length;
  assert.ok(clientMerges() <= connections, `client merged ${clientMerges()} times for 5 streams`);
  assert.ok(hostMerges() <= connections, `host merged ${hostMerges()} times for 5 streams`);
  const hostPeer = await libp2pOf(client).peerStore.get(libp2pOf(client).getConnections()[0]!.remotePeer);
  assert.ok(hostPeer.protocols.includes(PROTOCOL_HTTP), 'the protocol is still recorded');
});

test('a receiver does not answer every small data frame with a window update', async () => {
  let received = 0;
  const { client, host } = await connectedPair(async (stream) => {
    received = (await readAll(stream.source)).byteLength;
    await stream.closeWrite();
  });
  const stream = await client.openStream(host.endpointId, PROTOCOL_HTTP);
  await stream.write(Buffer.from('open'));
  await new Promise((r) => setTimeout(r, 100));

  // Everything the host sends on its connections while the client streams 200 small frames.
  let hostMessages = 0;
  for (const connection of libp2pOf(host).getConnections()) {
    const maConn = (connection as unknown as { maConn: { sendData(data: unknown): unknown } }).maConn;
    const send = maConn.sendData.bind(maConn);
    maConn.sendData = (data: unknown) => {
      hostMessages++;
      return send(data);
    };
  }
  const frames = 200;
  for (let i = 0; i < frames; i++) {
    await stream.write(Buffer.alloc(100, i));
    await new Promise((r) => setImmediate(r)); // one muxer frame per turn
  }
  await stream.closeWrite();
  await readAll(stream.source);
  assert.equal(received, 4 + frames * 100);
  // Unpatched yamux sends one window update per frame (≥ 200); 20 KB is far below half the
  // window, so what remains is the close and any gossip or ping that happened to run.
  assert.ok(hostMessages < 20, `host sent ${hostMessages} messages while receiving ${frames} frames`);
});

test('a length-prefixed decoder stops at an empty buffer without asking for a length', () => {
  // Noise's framing: a 2-byte big-endian length. Its decoder throws RangeError on too few bytes,
  // which the unpatched decoder used as its loop exit once per received message.
  let emptyReads = 0;
  const decoder = new LengthPrefixedDecoder({
    lengthDecoder: (data) => {
      if (data.byteLength === 0) emptyReads++;
      if (data.byteLength < 2) throw new RangeError('need 2 bytes');
      const prefix = data.subarray(0, 2);
      return (prefix[0]! << 8) | prefix[1]!;
    },
    encodingLength: () => 2,
  });
  const message = Uint8Array.from([0, 3, 7, 8, 9, 0, 1, 5]);
  const decoded = [...decoder.decode(message)].map((list) => [...list.subarray()]);
  assert.deepEqual(decoded, [[7, 8, 9], [5]]);
  assert.equal(emptyReads, 0);
  // A length prefix split across reads still waits for the rest.
  assert.deepEqual([...decoder.decode(Uint8Array.from([0]))], []);
  assert.deepEqual(
    [...decoder.decode(Uint8Array.from([2, 4, 2]))].map((list) => [...list.subarray()]),
    [[4, 2]],
  );
});
