import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../src/log.ts';
import { generateIdentity } from '../../src/mesh/identity.ts';
import { createLibp2pMesh } from '../../src/mesh/libp2p-mesh.ts';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { clusterPerTest, readAll, waitFor } from './helpers.ts';

const cluster = clusterPerTest();

test('two nodes gossip each other', async () => {
  const a = await cluster().node({ announcement: { name: 'alpha' } });
  const b = await cluster().node({ meshId: 'other-initial', announcement: { name: 'beta' } });
  await b.join(a.inviteToken());
  assert.equal(b.meshId, 'test-mesh');
  await waitFor(
    () => a.peer(b.endpointId) !== undefined && b.peer(a.endpointId) !== undefined,
    'mutual discovery',
  );
  const seenByB = b.peer(a.endpointId)!;
  assert.equal(seenByB.announcement.name, 'alpha');
  assert.equal(seenByB.connected, true);
  assert.equal(seenByB.transitive, false);
  assert.equal(seenByB.peerId, a.peerId);
  assert.equal(a.peer(b.endpointId)!.announcement.name, 'beta');
  // Heartbeats keep advancing the sequence and measure rtt.
  const firstSeq = seenByB.seq;
  await waitFor(() => (b.peer(a.endpointId)?.seq ?? 0n) > firstSeq, 'seq advance');
  await waitFor(() => b.peer(a.endpointId)?.rttMs !== undefined, 'rtt measured');
});

test('chain A-B-C: C learns A transitively and opens an http stream to it', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  const c = await cluster().node();
  a.handle(PROTOCOL_HTTP, async (stream, remote) => {
    const body = await readAll(stream.source);
    await stream.write(Buffer.from(`hello ${remote.slice(0, 8)} ${body.toString()}`));
    await stream.closeWrite();
  });
  await b.join(a.inviteToken());
  await c.join(b.inviteToken());
  await waitFor(() => c.peer(a.endpointId) !== undefined, 'C learns A');
  const rec = c.peer(a.endpointId)!;
  assert.equal(rec.transitive, true);
  assert.equal(rec.connected, false);
  assert.equal(c.connectionsTo(a.endpointId).length, 0);
  await waitFor(() => a.peer(c.endpointId) !== undefined, 'A learns C');
  const stream = await c.openStream(a.endpointId, PROTOCOL_HTTP);
  await stream.write(Buffer.from('ping'));
  await stream.closeWrite();
  const reply = await readAll(stream.source);
  assert.equal(reply.toString(), `hello ${c.endpointId.slice(0, 8)} ping`);
  await waitFor(() => c.peer(a.endpointId)?.connected === true, 'C connected to A');
});

test('updates and new peers spread at once, without waiting for a heartbeat', async () => {
  // Heartbeats far beyond the test's duration: only pushes can deliver these.
  const a = await cluster().node({ heartbeatMs: 600_000 });
  const b = await cluster().node({ heartbeatMs: 600_000 });
  const c = await cluster().node({ heartbeatMs: 600_000 });
  await b.join(a.inviteToken());
  await c.join(b.inviteToken());
  await waitFor(
    () => a.peer(c.endpointId) !== undefined && c.peer(a.endpointId) !== undefined,
    'chain learned',
  );
  const before = c.peer(a.endpointId)!.seq;
  await a.updateAnnouncement({ hostedModels: ['tiny-model'], hostedModelsKnown: true });
  await waitFor(
    () => c.peer(a.endpointId)?.announcement.hostedModels[0] === 'tiny-model',
    'update reaches C',
  );
  assert.ok(c.peer(a.endpointId)!.seq > before);
  assert.equal(a.localAnnouncement()?.hostedModels[0], 'tiny-model');
});

test('join() before start() dials the invite once started', async () => {
  const a = await cluster().node();
  const b = await createLibp2pMesh({
    identity: await generateIdentity(),
    version: 'test',
    logger: silentLogger(),
    heartbeatMs: 300,
  });
  cluster().nodes.push(b);
  await b.join(a.inviteToken());
  assert.equal(b.meshId, a.meshId);
  assert.deepEqual(b.addresses(), []);
  await b.start();
  await waitFor(() => a.peer(b.endpointId) !== undefined && b.peer(a.endpointId) !== undefined, 'joined');
});
