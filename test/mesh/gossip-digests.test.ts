import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  decodeGossipMessage,
  encodeGossipMessage,
  type GossipEntry,
  GossipError,
  MAX_ANNOUNCEMENTS_PER_MESSAGE,
  newsFor,
  requestGossip,
  splitGossip,
} from '../../src/mesh/gossip.ts';
import { endpointIdFromBytes } from '../../src/mesh/identity.ts';
import {
  GossipMessageSchema,
  PeerAnnouncementSchema,
  type SignedAnnouncement,
  SignedAnnouncementSchema,
} from '../../src/proto/gen/mesh_pb.js';
import { clusterPerTest, gossipStream, waitFor } from './helpers.ts';

const id = (n: number) => n.toString(16).padStart(2, '0').repeat(32);
const entry = (n: number, seq: bigint): GossipEntry => ({
  endpointId: id(n),
  seq,
  signed: create(SignedAnnouncementSchema, { announcement: Uint8Array.of(n), signature: Uint8Array.of(0) }),
});

describe('gossip digests (GossipMessage field 50)', () => {
  test('round-trip; a message without them decodes as from an older node', () => {
    const known = new Map([
      [id(1), 5n],
      [id(2), 7n],
    ]);
    const decoded = decodeGossipMessage(encodeGossipMessage([entry(3, 1n).signed], known));
    assert.deepEqual(decoded.known, known);
    assert.equal(decoded.announcements.length, 1);
    assert.equal(decodeGossipMessage(encodeGossipMessage([])).known, undefined);
    const empty = decodeGossipMessage(encodeGossipMessage([], new Map()));
    assert.deepEqual(empty.known, new Map(), 'an empty list still says "I send digests"');
  });

  test('news are origins the peer does not list or lists with an older seq; no digests → everything', () => {
    const entries = [entry(1, 5n), entry(2, 7n), entry(3, 1n)];
    const known = new Map([
      [id(1), 5n],
      [id(2), 6n],
    ]);
    assert.deepEqual(
      newsFor(entries, known).map((s) => s.announcement[0]),
      [2, 3],
    );
    assert.equal(newsFor(entries, undefined).length, 3);
  });

  test('malformed or truncated digests are GossipErrors', () => {
    const bytes = toBinary(
      GossipMessageSchema,
      create(GossipMessageSchema, { known: { digests: [{ endpointId: Uint8Array.of(1, 2), seq: 1n }] } }),
    );
    assert.throws(() => decodeGossipMessage(bytes), GossipError);
    assert.throws(
      () => decodeGossipMessage(Uint8Array.of(0x92, 0x03, 0xff)),
      GossipError,
      'truncated field 50',
    );
  });

  test('too many entries are trimmed to the cap, never refused whole (issue #15)', () => {
    const count = MAX_ANNOUNCEMENTS_PER_MESSAGE + 100;
    const id = (i: number) => Buffer.from(i.toString(16).padStart(64, '0'), 'hex');
    // Built by hand: our own encoder trims, a peer from before the bounds may not.
    const bytes = toBinary(
      GossipMessageSchema,
      create(GossipMessageSchema, {
        announcements: Array.from({ length: count }, (_, i) => ({ announcement: id(i), signature: id(i) })),
        known: { digests: Array.from({ length: count }, (_, i) => ({ endpointId: id(i), seq: 1n })) },
      }),
    );
    const decoded = decodeGossipMessage(bytes);
    assert.equal(decoded.announcements.length, MAX_ANNOUNCEMENTS_PER_MESSAGE);
    assert.equal(decoded.known?.size, MAX_ANNOUNCEMENTS_PER_MESSAGE);
    const many = new Map(Array.from({ length: count }, (_, i) => [id(i).toString('hex'), 1n]));
    assert.equal(
      decodeGossipMessage(encodeGossipMessage([], many)).known?.size,
      MAX_ANNOUNCEMENTS_PER_MESSAGE,
    );
  });

  test('splitGossip keeps every message under the entry and byte caps', () => {
    const big = (i: number) => ({
      announcement: new Uint8Array(60 * 1024).fill(i),
      signature: new Uint8Array(64),
    });
    const list = Array.from({ length: 300 }, (_, i) => big(i)) as never[];
    const batches = splitGossip(list);
    assert.ok(batches.length >= 3, `${batches.length} batches`);
    assert.equal(batches.flat().length, 300);
    for (const batch of batches) assert.ok(encodeGossipMessage(batch).byteLength < 8 * 1024 * 1024);
    const small = Array.from({ length: 5000 }, () => ({
      announcement: new Uint8Array(40),
      signature: new Uint8Array(64),
    })) as never[];
    assert.deepEqual(
      splitGossip(small).map((b) => b.length),
      [MAX_ANNOUNCEMENTS_PER_MESSAGE, 5000 - MAX_ANNOUNCEMENTS_PER_MESSAGE],
    );
  });
});

describe('a node answers gossip with what the asker lacks', () => {
  const cluster = clusterPerTest();

  test('digests of everything → empty answer; no digests → full set; one stale → that one', async () => {
    const responder = await cluster().node();
    const other = await cluster().node();
    const asker = await cluster().node();
    await other.join(responder.inviteToken());
    await asker.join(responder.inviteToken());
    await waitFor(
      () => responder.peer(other.endpointId) !== undefined && responder.peer(asker.endpointId) !== undefined,
      'responder knows both',
    );
    const origins = (list: SignedAnnouncement[]) =>
      list
        .map((s) => endpointIdFromBytes(fromBinary(PeerAnnouncementSchema, s.announcement).endpointId))
        .sort();
    const ask = async (known?: Map<string, bigint>) => {
      const stream = await gossipStream(asker, responder);
      return (await requestGossip(stream, [], known)).announcements;
    };
    // Far ahead of any seq: heartbeats re-sign while the test runs.
    const ahead = BigInt(Number.MAX_SAFE_INTEGER);
    const everything = new Map([responder, other, asker].map((n) => [n.endpointId, ahead]));
    assert.deepEqual(await ask(everything), []);
    assert.deepEqual(
      origins(await ask()),
      [responder.endpointId, other.endpointId, asker.endpointId].sort(),
      'an older node gets the full set',
    );
    const stale = new Map(everything);
    stale.set(other.endpointId, 0n);
    assert.deepEqual(origins(await ask(stale)), [other.endpointId]);
  });
});
