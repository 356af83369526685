import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { signAnnouncement } from '../../src/mesh/announcements.ts';
import { MAX_FRAME_BYTES } from '../../src/mesh/frames.ts';
import {
  decodeGossipMessage,
  encodeGossipMessage,
  type GossipEntry,
  MAX_ANNOUNCEMENTS_PER_MESSAGE,
  newsFor,
  splitGossip,
} from '../../src/mesh/gossip.ts';
import { endpointIdToBytes, generateIdentity, type MeshIdentity } from '../../src/mesh/identity.ts';
import { PeerTable } from '../../src/mesh/peer-table.ts';
import { PeerAnnouncementSchema, type SignedAnnouncement } from '../../src/proto/gen/mesh_pb.js';
import { mulberry32 } from '../helpers/prng.ts';

// Issue #15 property: however many origins churn through a mesh (join, leave, fall silent, or
// are pushed by a flooding member), every node's gossip state stays within its bounds, every
// message fits one frame, and the honest nodes keep converging.

const MESH = 'churn-mesh';
const HEARTBEAT_MS = 60_000;
const ROUND_MS = 10_000;
const BOUNDS = {
  maxPeers: 64,
  maxTombstones: 64,
  maxLeaving: 16,
  newOriginBurst: 32,
  newOriginsPerSecond: 1,
};

async function sign(identity: MeshIdentity, seq: bigint, leaving = false): Promise<SignedAnnouncement> {
  return signAnnouncement(
    identity.privateKey,
    create(PeerAnnouncementSchema, {
      endpointId: endpointIdToBytes(identity.endpointId),
      meshId: MESH,
      announcementSeq: seq,
      leaving,
    }),
  );
}

interface SimNode {
  identity: MeshIdentity;
  table: PeerTable;
  own: GossipEntry;
}

async function simNode(clock: () => number, seq: bigint): Promise<SimNode> {
  const identity = await generateIdentity();
  const table = new PeerTable({
    selfEndpointId: identity.endpointId,
    meshId: () => MESH,
    clock,
    isConnected: () => false,
    leaveRelayMs: HEARTBEAT_MS * 3,
    ...BOUNDS,
  });
  return {
    identity,
    table,
    own: { endpointId: identity.endpointId, seq, signed: await sign(identity, seq) },
  };
}

function checkedMessage(announcements: SignedAnnouncement[], known?: Map<string, bigint>) {
  const bytes = encodeGossipMessage(announcements, known);
  assert.ok(bytes.byteLength <= MAX_FRAME_BYTES, 'a message fits one frame');
  const decoded = decodeGossipMessage(bytes);
  assert.ok(decoded.announcements.length <= MAX_ANNOUNCEMENTS_PER_MESSAGE);
  assert.ok((decoded.known?.size ?? 0) <= MAX_ANNOUNCEMENTS_PER_MESSAGE);
  return decoded;
}

function digests(node: SimNode): Map<string, bigint> {
  return node.table.knownDigests().set(node.identity.endpointId, node.own.seq);
}

/** One anti-entropy exchange as the mesh runs it: full set split to fit, answer with news. */
async function exchange(initiator: SimNode, responder: SimNode): Promise<void> {
  const full = (n: SimNode) => [n.own, ...n.table.relayEntries()];
  for (const batch of splitGossip(full(initiator).map((e) => e.signed))) {
    const request = checkedMessage(batch, digests(initiator));
    for (const signed of request.announcements)
      await responder.table.ingest(signed, initiator.identity.endpointId);
    const answer = splitGossip(newsFor(full(responder), request.known))[0]!;
    const reply = checkedMessage(answer);
    for (const signed of reply.announcements)
      await initiator.table.ingest(signed, responder.identity.endpointId);
  }
}

function assertBounded(node: SimNode): void {
  const { peers, remembered, leaving } = node.table.sizes();
  assert.ok(peers <= BOUNDS.maxPeers, `peers ${peers}`);
  assert.ok(remembered <= BOUNDS.maxPeers + BOUNDS.maxTombstones, `remembered ${remembered}`);
  assert.ok(leaving <= BOUNDS.maxLeaving, `leaving ${leaving}`);
}

for (const seed of [1, 2]) {
  test(`gossip state stays bounded and honest nodes converge as 600 origins churn (10x the caps) (seed ${seed})`, async () => {
    const random = mulberry32(seed);
    const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]!;
    let now = 1_000_000;
    const clock = () => now;
    let seq = 1n;
    const honest: SimNode[] = [];
    for (let i = 0; i < 4; i++) honest.push(await simNode(clock, seq));
    const live: Array<{ identity: MeshIdentity; seq: bigint; node: SimNode }> = [];
    const flooder = (await generateIdentity()).endpointId;
    let churned = 0;

    const round = async (newOrigins: number) => {
      now += ROUND_MS;
      seq++;
      for (const node of honest) {
        node.own = { endpointId: node.identity.endpointId, seq, signed: await sign(node.identity, seq) };
      }
      for (let i = 0; i < newOrigins; i++) {
        const identity = await generateIdentity();
        const node = pick(honest);
        // Most arrive on their own connection; some are pushed by one flooding member.
        const from = random() < 0.3 ? flooder : identity.endpointId;
        await node.table.ingest(await sign(identity, 1n), from);
        live.push({ identity, seq: 1n, node });
        churned++;
      }
      // Churn: some live origins re-announce, some leave, the rest fall silent.
      for (const origin of live.splice(0, Math.floor(live.length * 0.5))) {
        const roll = random();
        if (roll < 0.3) {
          origin.seq++;
          await origin.node.table.ingest(await sign(origin.identity, origin.seq), origin.identity.endpointId);
          live.push(origin);
        } else if (roll < 0.6) {
          await origin.node.table.ingest(
            await sign(origin.identity, origin.seq + 1n, true),
            origin.identity.endpointId,
          );
        }
      }
      for (let i = 0; i < honest.length; i++) {
        await exchange(
          honest[i]!,
          honest[(i + 1 + Math.floor(random() * (honest.length - 1))) % honest.length]!,
        );
      }
      for (const node of honest) {
        node.table.sweep(HEARTBEAT_MS * 2.5);
        assertBounded(node);
      }
    };

    for (let r = 0; r < 30; r++) await round(20);
    assert.equal(churned, 600);
    // Churn stops; a newcomer joins through one node. Within a few heartbeats everyone agrees.
    const newcomer = await simNode(clock, seq);
    honest.push(newcomer);
    await exchange(newcomer, honest[0]!);
    for (let r = 0; r < 6; r++) await round(0);
    for (const node of honest) {
      for (const other of honest) {
        if (other === node) continue;
        assert.ok(node.table.get(other.identity.endpointId), 'every honest node knows every other');
      }
    }
  });
}
