import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { signAnnouncementBytes } from '../../src/mesh/announcements.ts';
import { encodeFrame } from '../../src/mesh/frames.ts';
import { requestGossip } from '../../src/mesh/gossip.ts';
import { generateIdentity } from '../../src/mesh/identity.ts';
import { encodeInviteToken } from '../../src/mesh/invite.ts';
import { type PeerEvent, PROTOCOL_GOSSIP, PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { PeerAnnouncementSchema, SignedAnnouncementSchema } from '../../src/proto/gen/mesh_pb.js';
import { clusterPerTest, gossipStream, HEARTBEAT_MS, readAll, waitFor } from './helpers.ts';

const cluster = clusterPerTest();

function recordEvents(node: { onPeerEvent: (l: (e: PeerEvent) => void) => () => void }): PeerEvent[] {
  const events: PeerEvent[] = [];
  node.onPeerEvent((e) => events.push(e));
  return events;
}

const removed = (events: PeerEvent[], id: string) =>
  events.find((e) => e.type === 'removed' && e.endpointId === id) as
    | { type: 'removed'; endpointId: string; reason: string }
    | undefined;

test('unknown future fields are relayed byte-identical by a middle node and verify at the far node', async () => {
  const far = await cluster().node();
  const middle = await cluster().node();
  const injector = await cluster().node();
  await middle.join(far.inviteToken());
  await injector.join(middle.inviteToken());
  await waitFor(() => middle.peer(injector.endpointId) !== undefined, 'middle knows injector');

  // An origin from the future: fields this code does not know (99) inside the signed bytes.
  const origin = await generateIdentity();
  const base = toBinary(
    PeerAnnouncementSchema,
    create(PeerAnnouncementSchema, {
      endpointId: origin.privateKey.publicKey.raw,
      meshId: 'test-mesh',
      name: 'future-node',
      announcementSeq: BigInt(Date.now()) * 1000n,
    }),
  );
  const payload = Buffer.from('from-the-future');
  const bytes = Buffer.concat([Buffer.from(base), Buffer.from([0x9a, 0x06, payload.byteLength]), payload]);
  const signed = await signAnnouncementBytes(origin.privateKey, bytes);
  const stream = await gossipStream(injector, middle);
  await requestGossip(stream, [signed]);

  await waitFor(() => far.peer(origin.endpointId) !== undefined, 'far node learns the future node');
  const record = far.peer(origin.endpointId)!;
  const inner = fromBinary(SignedAnnouncementSchema, record.signedBytes).announcement;
  assert.ok(Buffer.from(inner).equals(bytes), 'relayed byte-identical');
  assert.equal(record.announcement.name, 'future-node');
  assert.equal(record.transitive, true);

  // It never refreshes, so every node drops it as silent after two heartbeats.
  const events = recordEvents(far);
  await waitFor(() => removed(events, origin.endpointId) !== undefined, 'silent removal', HEARTBEAT_MS * 12);
  assert.equal(removed(events, origin.endpointId)!.reason, 'silent');
  assert.equal(far.peer(origin.endpointId), undefined);
});

test('a crashed peer is removed as silent', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  await b.join(a.inviteToken());
  await waitFor(() => a.peer(b.endpointId) !== undefined, 'A knows B');
  const events = recordEvents(a);
  await b.abort();
  await waitFor(() => removed(events, b.endpointId) !== undefined, 'B removed', HEARTBEAT_MS * 12);
  assert.equal(removed(events, b.endpointId)!.reason, 'silent');
  assert.equal(a.peers().length, 0);
});

test('graceful leave reaches direct and transitive peers as "left"', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  const c = await cluster().node();
  await b.join(a.inviteToken());
  await c.join(b.inviteToken());
  await waitFor(() => a.peer(c.endpointId) !== undefined, 'A learns C through B');
  const eventsA = recordEvents(a);
  const eventsB = recordEvents(b);
  await c.stop();
  await waitFor(() => removed(eventsB, c.endpointId) !== undefined, 'B sees C leave');
  await waitFor(() => removed(eventsA, c.endpointId) !== undefined, 'A sees C leave');
  assert.equal(removed(eventsB, c.endpointId)!.reason, 'left');
  assert.equal(removed(eventsA, c.endpointId)!.reason, 'left');
  // It stays gone across later heartbeats (no resurrection from stale copies).
  await new Promise((r) => setTimeout(r, HEARTBEAT_MS * 3));
  assert.equal(a.peer(c.endpointId), undefined);
  assert.equal(b.peer(c.endpointId), undefined);
  assert.ok(a.peer(b.endpointId), 'the rest of the mesh is intact');
});

test('a node that leaves and restarts with the same key and data is accepted again', async () => {
  const a = await cluster().node();
  const helper = await cluster().node();
  await helper.join(a.inviteToken());
  const dataDir = await cluster().tempDir();
  const b1 = await cluster().node({ dataDir, announcement: { name: 'first-life' } });
  await b1.join(a.inviteToken());
  await waitFor(
    () => a.peer(b1.endpointId) !== undefined && helper.peer(b1.endpointId) !== undefined,
    'B known',
  );
  const oldCopy = fromBinary(SignedAnnouncementSchema, a.peer(b1.endpointId)!.signedBytes);
  const firstSeq = a.peer(b1.endpointId)!.seq;
  const events = recordEvents(a);
  await b1.stop();
  await waitFor(() => removed(events, b1.endpointId)?.reason === 'left', 'B left');

  // A stale copy of B's announcement replayed to A is refused.
  const stream = await gossipStream(helper, a);
  await requestGossip(stream, [oldCopy]);
  assert.equal(a.peer(b1.endpointId), undefined);

  const b2 = await cluster().node({ dataDir, announcement: { name: 'second-life' } });
  assert.equal(b2.endpointId, b1.endpointId, 'same identity from the data dir');
  await b2.join(a.inviteToken());
  await waitFor(() => a.peer(b2.endpointId)?.announcement.name === 'second-life', 'B accepted again');
  assert.ok(a.peer(b2.endpointId)!.seq > firstSeq);
  await waitFor(() => helper.peer(b2.endpointId) !== undefined, 'helper learns the restarted B');
});

test('a dropped bootstrap peer is redialed when it comes back', async () => {
  const dataDir = await cluster().tempDir();
  const a1 = await cluster().node({ dataDir });
  const port = Number(a1.addresses()[0]!.split('/')[4]);
  const b = await cluster().node();
  await b.join(a1.inviteToken());
  await waitFor(() => b.peer(a1.endpointId) !== undefined, 'B knows A');
  await a1.abort();
  await waitFor(() => b.peer(a1.endpointId)?.connected !== true, 'B sees A drop');
  // A returns on the same address with the same identity.
  const a2 = await cluster().node({ dataDir, listenPort: port });
  // Both sides: A may hold B's announcement a moment before B has read A's reply.
  await waitFor(
    () => a2.peer(b.endpointId) !== undefined && b.peer(a2.endpointId)?.connected === true,
    'B reconnected to the returning A',
    15_000,
  );
});

test('malformed gossip is dropped and the node keeps running', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  await b.join(a.inviteToken());
  await waitFor(() => a.peer(b.endpointId) !== undefined, 'A knows B');
  for (const junk of [
    encodeFrame(new Uint8Array([0xff, 0xff, 0xff, 0xff])),
    new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  ]) {
    const stream = await b.openStream(a.endpointId, PROTOCOL_GOSSIP);
    await stream.write(junk);
    await stream.closeWrite();
    await readAll(stream.source).catch(() => Buffer.alloc(0));
  }
  // Still healthy: a fresh exchange works and the announcement keeps advancing.
  const seq = b.peer(a.endpointId)!.seq;
  await waitFor(() => (b.peer(a.endpointId)?.seq ?? 0n) > seq, 'A still gossiping');
});

test('nodes of another mesh are ignored and cannot use app protocols', async () => {
  const a = await cluster().node({ memberWaitMs: 500 });
  const b = await cluster().node();
  await b.join(a.inviteToken());
  let served = 0;
  a.handle(PROTOCOL_HTTP, async (stream) => {
    served++;
    await stream.closeWrite();
  });
  await waitFor(() => a.peer(b.endpointId) !== undefined, 'A knows B');
  // A stranger dials A with a token naming its own mesh: it connects but is not a member.
  const stranger = await cluster().node({ meshId: 'elsewhere' });
  await stranger.join(encodeInviteToken('elsewhere', a.addresses()));
  await waitFor(() => stranger.connectionsTo(a.endpointId).length > 0, 'stranger connected');
  await new Promise((r) => setTimeout(r, HEARTBEAT_MS * 2));
  assert.equal(a.peer(stranger.endpointId), undefined);
  assert.equal(stranger.peers().length, 0, 'the stranger learns nobody');
  const stream = await stranger.openStream(a.endpointId, PROTOCOL_HTTP);
  await stream.closeWrite();
  await assert.rejects(readAll(stream.source));
  assert.equal(served, 0);
});
