import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { Cluster, readAll, waitFor } from './helpers.ts';

let cluster: Cluster;
beforeEach(() => {
  cluster = new Cluster();
});
afterEach(async () => {
  await cluster.cleanup();
});

test('two nodes gossip each other', async () => {
  const a = await cluster.node({ announcement: { name: 'alpha' } });
  const b = await cluster.node({ meshId: 'other-initial', announcement: { name: 'beta' } });
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
  const a = await cluster.node();
  const b = await cluster.node();
  const c = await cluster.node();
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
