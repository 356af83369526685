import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  AnnouncementError,
  signAnnouncement,
  signAnnouncementBytes,
  verifySignedAnnouncement,
} from '../../src/mesh/announcements.ts';
import { generateIdentity, type MeshIdentity } from '../../src/mesh/identity.ts';
import { PeerTable } from '../../src/mesh/peer-table.ts';
import type { PeerEvent } from '../../src/mesh/types.ts';
import {
  type PeerAnnouncement,
  PeerAnnouncementSchema,
  SecurityPostureSchema,
  SignedAnnouncementSchema,
} from '../../src/proto/gen/mesh_pb.js';

type Fields = Omit<Partial<PeerAnnouncement>, '$typeName' | '$unknown'>;

function announcement(identity: MeshIdentity, fields: Fields = {}): PeerAnnouncement {
  return create(PeerAnnouncementSchema, {
    endpointId: identity.privateKey.publicKey.raw,
    meshId: 'm1',
    version: '1.0.0',
    name: 'n',
    announcementSeq: 10n,
    ...fields,
  });
}

/** Appends field 99 (length-delimited) raw, as a future version of the schema would. */
function withUnknownField(bytes: Uint8Array): Uint8Array {
  const payload = Buffer.from('future');
  // Tag (99 << 3) | 2 = 794 is the varint 0x9a 0x06, then the length.
  return Buffer.concat([Buffer.from(bytes), Buffer.from([0x9a, 0x06, payload.byteLength]), payload]);
}

function makeTable(self: string, clock: { now: number }) {
  const events: PeerEvent[] = [];
  const table = new PeerTable({
    selfEndpointId: self,
    meshId: () => 'm1',
    clock: () => clock.now,
    isConnected: () => false,
    leaveRelayMs: 1000,
  });
  table.onEvent((e) => events.push(e));
  return { table, events };
}

test('an announcement without fields 36-38 decodes, verifies and is accepted', async () => {
  const origin = await generateIdentity();
  const self = await generateIdentity();
  const signed = await signAnnouncement(origin.privateKey, announcement(origin));
  const verified = await verifySignedAnnouncement(signed);
  assert.equal(verified.endpointId, origin.endpointId);
  assert.equal(verified.announcement.inferencePublicKey, undefined);
  assert.equal(verified.announcement.securityPosture, undefined);
  assert.equal(verified.announcement.hardwareAttestationBlob, undefined);
  const { table } = makeTable(self.endpointId, { now: 1 });
  const result = await table.ingest(signed);
  assert.equal(result.status, 'accepted');
  assert.equal(table.get(origin.endpointId)?.announcement.name, 'n');
});

test('fields 36-38 round-trip when present', async () => {
  const origin = await generateIdentity();
  const key = Buffer.alloc(32, 7).toString('base64');
  const signed = await signAnnouncement(
    origin.privateKey,
    announcement(origin, {
      inferencePublicKey: key,
      securityPosture: create(SecurityPostureSchema, { debuggerBlocked: true, binaryHash: 'ab' }),
      hardwareAttestationBlob: new Uint8Array([1, 2, 3]),
    }),
  );
  const { announcement: decoded } = await verifySignedAnnouncement(signed);
  assert.equal(decoded.inferencePublicKey, key);
  assert.equal(decoded.securityPosture?.debuggerBlocked, true);
  assert.deepEqual([...(decoded.hardwareAttestationBlob ?? [])], [1, 2, 3]);
});

test('unknown future fields survive byte-identical and keep verifying', async () => {
  const origin = await generateIdentity();
  const bytes = withUnknownField(toBinary(PeerAnnouncementSchema, announcement(origin)));
  const signed = await signAnnouncementBytes(origin.privateKey, bytes);
  // Through the wire and back: the inner bytes are carried, not re-encoded.
  const relayed = fromBinary(SignedAnnouncementSchema, toBinary(SignedAnnouncementSchema, signed));
  assert.ok(Buffer.from(relayed.announcement).equals(Buffer.from(bytes)));
  const verified = await verifySignedAnnouncement(relayed);
  assert.equal(verified.announcement.$unknown?.[0]?.no, 99);
  const self = await generateIdentity();
  const { table } = makeTable(self.endpointId, { now: 1 });
  assert.equal((await table.ingest(relayed)).status, 'accepted');
  const stored = fromBinary(SignedAnnouncementSchema, table.get(origin.endpointId)!.signedBytes);
  assert.ok(Buffer.from(stored.announcement).equals(Buffer.from(bytes)));
});

test('tampered bytes, wrong signer, bad signature and garbage are rejected', async () => {
  const origin = await generateIdentity();
  const other = await generateIdentity();
  const self = await generateIdentity();
  const { table } = makeTable(self.endpointId, { now: 1 });
  const signed = await signAnnouncement(origin.privateKey, announcement(origin, { name: 'honest' }));

  // Flip one byte inside the name: still decodes, signature no longer matches.
  const tampered = Buffer.from(signed.announcement);
  const at = tampered.indexOf(Buffer.from('honest'));
  tampered[at] = 'H'.charCodeAt(0);
  const tamperedSigned = create(SignedAnnouncementSchema, {
    announcement: tampered,
    signature: signed.signature,
  });
  await assert.rejects(verifySignedAnnouncement(tamperedSigned), (e: unknown) => {
    return e instanceof AnnouncementError && e.reason === 'bad_signature';
  });
  assert.deepEqual(await table.ingest(tamperedSigned), {
    status: 'rejected',
    reason: 'bad_signature',
    endpointId: origin.endpointId,
  });

  // Claims to be `other` but is signed by `origin`: a relay substituting identities.
  const impostor = await signAnnouncement(origin.privateKey, announcement(other));
  const r2 = await table.ingest(impostor);
  assert.equal(r2.status, 'rejected');
  assert.equal(r2.status === 'rejected' && r2.reason, 'bad_signature');

  const shortSig = create(SignedAnnouncementSchema, {
    announcement: signed.announcement,
    signature: new Uint8Array(3),
  });
  const r3 = await table.ingest(shortSig);
  assert.equal(r3.status === 'rejected' && r3.reason, 'bad_signature');

  const garbage = create(SignedAnnouncementSchema, {
    announcement: new Uint8Array([0xff, 0xff, 0xff]),
    signature: signed.signature,
  });
  const r4 = await table.ingest(garbage);
  assert.equal(r4.status === 'rejected' && r4.reason, 'malformed');

  const badId = await signAnnouncement(
    origin.privateKey,
    announcement(origin, { endpointId: new Uint8Array(31) }),
  );
  const r5 = await table.ingest(badId);
  assert.equal(r5.status === 'rejected' && r5.reason, 'malformed');
  assert.equal(table.list().length, 0);
});

test('lower or equal seq and other mesh ids are rejected; own announcements ignored', async () => {
  const origin = await generateIdentity();
  const self = await generateIdentity();
  const { table } = makeTable(self.endpointId, { now: 1 });
  const sign = (f: Fields) => signAnnouncement(origin.privateKey, announcement(origin, f));
  assert.equal((await table.ingest(await sign({ announcementSeq: 10n }))).status, 'accepted');
  const equal = await table.ingest(await sign({ announcementSeq: 10n, name: 'changed' }));
  assert.equal(equal.status === 'rejected' && equal.reason, 'stale_seq');
  const lower = await table.ingest(await sign({ announcementSeq: 9n }));
  assert.equal(lower.status === 'rejected' && lower.reason, 'stale_seq');
  assert.equal(table.get(origin.endpointId)?.announcement.name, 'n');
  const foreign = await table.ingest(await sign({ announcementSeq: 11n, meshId: 'other' }));
  assert.equal(foreign.status === 'rejected' && foreign.reason, 'other_mesh');
  const noMesh = await table.ingest(await sign({ announcementSeq: 12n, meshId: '' }));
  assert.equal(noMesh.status === 'rejected' && noMesh.reason, 'no_mesh_id');
  const own = await table.ingest(await signAnnouncement(self.privateKey, announcement(self)));
  assert.equal(own.status === 'rejected' && own.reason, 'self');
  const higher = await table.ingest(await sign({ announcementSeq: 13n, name: 'newer' }));
  assert.equal(higher.status, 'accepted');
  assert.equal(higher.status === 'accepted' && higher.changed, true);
  assert.equal(table.get(origin.endpointId)?.seq, 13n);
});

test('leave, silence, no resurrection by stale copies, acceptance after restart', async () => {
  const origin = await generateIdentity();
  const self = await generateIdentity();
  const clock = { now: 1000 };
  const { table, events } = makeTable(self.endpointId, clock);
  const sign = (f: Fields) => signAnnouncement(origin.privateKey, announcement(origin, f));
  const old = await sign({ announcementSeq: 10n });
  await table.ingest(old);
  const leave = await sign({ announcementSeq: 11n, leaving: true });
  assert.deepEqual(await table.ingest(leave), { status: 'left', endpointId: origin.endpointId });
  assert.deepEqual(events.at(-1), { type: 'removed', endpointId: origin.endpointId, reason: 'left' });
  assert.equal(table.get(origin.endpointId), undefined);
  // The leave notice is relayed for a while so others learn it too.
  const relayed = table.relayEntries().map((e) => Buffer.from(e.signed.announcement));
  assert.ok(relayed.some((b) => b.equals(Buffer.from(leave.announcement))));
  // A stale copy still circulating does not bring it back.
  assert.equal((await table.ingest(old)).status, 'rejected');
  assert.equal(table.get(origin.endpointId), undefined);
  // A restart (higher seq) is accepted again.
  assert.equal((await table.ingest(await sign({ announcementSeq: 5_000n }))).status, 'accepted');
  assert.ok(table.get(origin.endpointId));
  // Silence: not advanced within the window -> removed as silent.
  clock.now += 500;
  assert.deepEqual(table.sweep(1000), []);
  clock.now += 600;
  assert.deepEqual(table.sweep(1000), [origin.endpointId]);
  assert.deepEqual(events.at(-1), { type: 'removed', endpointId: origin.endpointId, reason: 'silent' });
  assert.equal((await table.ingest(await sign({ announcementSeq: 5_000n }))).status, 'rejected');
  assert.equal(table.relayEntries().length, 0);
});
