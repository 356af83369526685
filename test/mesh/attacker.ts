import { create } from '@bufbuild/protobuf';
import type { Libp2p } from '@libp2p/interface';
import { signAnnouncement } from '../../src/mesh/announcements.ts';
import { requestGossip } from '../../src/mesh/gossip.ts';
import {
  endpointIdToBytes,
  generateIdentity,
  type MeshIdentity,
  peerIdFromEndpointId,
} from '../../src/mesh/identity.ts';
import type { Libp2pMesh } from '../../src/mesh/libp2p-mesh.ts';
import { type LocalAnnouncementFields, PROTOCOL_GOSSIP } from '../../src/mesh/types.ts';
import { PeerAnnouncementSchema, type SignedAnnouncement } from '../../src/proto/gen/mesh_pb.js';

/** A malicious member's tools, built from the project's own modules (tests only). */

/** A validly signed announcement of `identity` with `fields` (mesh id and seq included). */
export function forgeAnnouncement(
  identity: MeshIdentity,
  fields: LocalAnnouncementFields & { meshId: string; announcementSeq?: bigint; listenAddrs?: string[] },
): Promise<SignedAnnouncement> {
  return signAnnouncement(
    identity.privateKey,
    create(PeerAnnouncementSchema, {
      version: 'test',
      announcementSeq: 1n,
      ...fields,
      endpointId: endpointIdToBytes(identity.endpointId),
    }),
  );
}

/** Fresh origins, each with a validly signed announcement for `meshId`. */
export async function forgeOrigins(
  count: number,
  meshId: string,
): Promise<Array<{ identity: MeshIdentity; signed: SignedAnnouncement }>> {
  const out: Array<{ identity: MeshIdentity; signed: SignedAnnouncement }> = [];
  for (let i = 0; i < count; i++) {
    const identity = await generateIdentity();
    out.push({ identity, signed: await forgeAnnouncement(identity, { meshId, name: `fake-${i}` }) });
  }
  return out;
}

/** Sends `announcements` to `victim` on one raw gossip stream from `from` (no digests: "send me all"). */
export async function pushGossip(
  from: Libp2pMesh,
  victim: { endpointId: string },
  announcements: SignedAnnouncement[],
): Promise<void> {
  const libp2p = (from as unknown as { libp2p: Libp2p }).libp2p;
  const stream = await libp2p.dialProtocol(peerIdFromEndpointId(victim.endpointId), PROTOCOL_GOSSIP, {
    signal: AbortSignal.timeout(30_000),
    runOnLimitedConnection: true,
  });
  await requestGossip(stream, announcements).catch(() => undefined);
}
