import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { signAnnouncement } from '../../src/mesh/announcements.ts';
import { generateIdentity, type MeshIdentity } from '../../src/mesh/identity.ts';
import { PeerTable } from '../../src/mesh/peer-table.ts';
import { PeerAnnouncementSchema, SignedAnnouncementSchema } from '../../src/proto/gen/mesh_pb.js';

const sign = (identity: MeshIdentity, seq: bigint) =>
  signAnnouncement(
    identity.privateKey,
    create(PeerAnnouncementSchema, {
      endpointId: identity.privateKey.publicKey.raw,
      meshId: 'm1',
      version: '1.0.0',
      announcementSeq: seq,
    }),
  );

// A member relaying newer versions of known origins with forged signatures made the node check
// every one: the new-origin budget did not apply to origins it already knew.
test("one relaying peer's forged versions of known origins are checked within a budget", async () => {
  const clock = { now: 1_000 };
  const self = await generateIdentity();
  const table = new PeerTable({
    selfEndpointId: self.endpointId,
    meshId: () => 'm1',
    clock: () => clock.now,
    isConnected: () => false,
    leaveRelayMs: 1_000,
    verifyBurst: 5,
    verifiesPerSecond: 1,
  });
  const origins = await Promise.all(Array.from({ length: 12 }, () => generateIdentity()));
  for (const origin of origins) assert.equal((await table.ingest(await sign(origin, 1n))).status, 'accepted');

  const forged = async (origin: MeshIdentity) => {
    const real = await sign(origin, 2n);
    return create(SignedAnnouncementSchema, {
      announcement: real.announcement,
      signature: new Uint8Array(64),
    });
  };
  const reasons: string[] = [];
  for (const origin of origins) {
    const result = await table.ingest(await forged(origin), 'hostile');
    reasons.push(result.status === 'rejected' ? result.reason : result.status);
  }
  assert.deepEqual(reasons, [...Array(5).fill('bad_signature'), ...Array(7).fill('rate_limited')]);

  // Other relayers keep their own budget, and the hostile one regains a check a second.
  assert.equal((await table.ingest(await sign(origins[0]!, 3n), 'honest')).status, 'accepted');
  clock.now += 2_000;
  const later = [];
  for (const origin of origins.slice(1, 4)) later.push(await table.ingest(await forged(origin), 'hostile'));
  assert.deepEqual(
    later.map((r) => (r.status === 'rejected' ? r.reason : r.status)),
    ['bad_signature', 'bad_signature', 'rate_limited'],
  );
});
