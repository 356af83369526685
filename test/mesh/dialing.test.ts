import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { UpstreamError } from '../../src/errors.ts';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { clusterPerTest, waitFor } from './helpers.ts';

const cluster = clusterPerTest();
const QUIET = { heartbeatMs: 600_000 };

/** A TCP server that accepts and then says nothing: a dial to it hangs in the handshake. */
async function silentServer(port: number): Promise<() => Promise<void>> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((r) => server.close(r));
  };
}

test('a request dial ends by the dial deadline even when its own signal never fires', async () => {
  const client = await cluster().node(QUIET);
  const host = await cluster().node(QUIET);
  await client.join(host.inviteToken());
  await waitFor(() => client.peer(host.endpointId) !== undefined, 'client knows the host');
  const port = Number(host.addresses()[0]!.split('/')[4]);
  await host.abort();
  await waitFor(() => client.peer(host.endpointId)?.connected === false, 'client sees the host drop');
  // The host's address now leads to a peer that accepts TCP and never speaks.
  const close = await silentServer(port);
  try {
    const started = Date.now();
    const never = new AbortController().signal;
    await assert.rejects(client.openStream(host.endpointId, PROTOCOL_HTTP, { signal: never }), (err) => {
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.code, 'peer_unreachable');
      return true;
    });
    const took = Date.now() - started;
    assert.ok(took < 9_000, `gave up after ${took} ms (deadline 5 s)`);
  } finally {
    await close();
  }
});

test('a peer whose connection died leaves routing within seconds, and returns when it is back', async () => {
  const dataDir = await cluster().tempDir();
  const client = await cluster().node(QUIET);
  const host = await cluster().node({ ...QUIET, dataDir });
  const port = Number(host.addresses()[0]!.split('/')[4]);
  await client.join(host.inviteToken());
  await waitFor(() => client.peers().some((p) => p.endpointId === host.endpointId), 'client lists the host');
  const lostAt = Date.now();
  await host.abort();
  // The heartbeat is 10 minutes: only the dead connection can take it out.
  await waitFor(
    () => !client.peers().some((p) => p.endpointId === host.endpointId),
    'the host leaves the peer list',
    15_000,
  );
  assert.ok(Date.now() - lostAt < 15_000);
  assert.ok(client.peer(host.endpointId) !== undefined, 'still known, only left out of routing');
  // Back on the same port with the same identity: libp2p's reconnect queue finds it again.
  await cluster().node({ ...QUIET, dataDir, listenPort: port });
  await waitFor(
    () => client.peers().some((p) => p.endpointId === host.endpointId),
    'the returning host is listed again',
    30_000,
  );
});

test('a crashed host known only through gossip leaves routing once no member reaches it', async () => {
  const target = await cluster().node({ ...QUIET, announcement: { hostedModels: ['m'] } });
  // As a host's inbound HTTP handler does with an empty request: nothing to answer.
  target.handle(PROTOCOL_HTTP, async (stream) => {
    for await (const _ of stream.source) {
      // drained
    }
    await stream.closeWrite();
  });
  const middle = await cluster().node(QUIET);
  const client = await cluster().node({ ...QUIET, transitiveCheckMs: 300 });
  await middle.join(target.inviteToken());
  await client.join(middle.inviteToken());
  const listed = () => client.peers().some((p) => p.endpointId === target.endpointId);
  await waitFor(listed, 'client lists the host it learnt through the middle');
  // Several rounds of checks through the middle find it alive.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  assert.ok(listed(), 'a live host stays listed');
  assert.equal(client.connectionsTo(target.endpointId).length, 0, 'known only through gossip');
  const crashed = Date.now();
  await target.abort();
  await waitFor(() => !listed(), 'the crashed host leaves the client peer list', 15_000);
  assert.ok(Date.now() - crashed < 15_000);
  assert.ok(client.peer(target.endpointId) !== undefined, 'still known, only left out of routing');
});
