import { create } from '@bufbuild/protobuf';
import {
  type PeerAnnouncement,
  PeerAnnouncementSchema,
  type SignedAnnouncement,
} from '../proto/gen/mesh_pb.js';
import { signAnnouncement } from './announcements.ts';
import type { GossipEntry } from './gossip.ts';
import { endpointIdToBytes, type MeshIdentity } from './identity.ts';
import type { AnnouncementSequence } from './sequence.ts';
import type { EndpointId, LocalAnnouncementFields } from './types.ts';

export interface LocalAnnouncementInit {
  identity: MeshIdentity;
  sequence: AnnouncementSequence;
  fields: LocalAnnouncementFields;
  version: string;
  clock: () => number;
  meshId: () => string;
  /** The addresses to announce, read at each signing. */
  addresses: () => string[];
}

/** This node's own signed announcement: its fields, and each re-signing with the next seq. */
export class LocalAnnouncement {
  readonly endpointId: EndpointId;
  private readonly init: LocalAnnouncementInit;
  private fields: LocalAnnouncementFields;
  private signed: SignedAnnouncement | undefined;
  private current: PeerAnnouncement | undefined;
  private leaving = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(init: LocalAnnouncementInit) {
    this.init = init;
    this.endpointId = init.identity.endpointId;
    this.fields = { ...init.fields };
  }

  /** The latest signed announcement, once signed. */
  get announcement(): PeerAnnouncement | undefined {
    return this.current;
  }

  merge(fields: LocalAnnouncementFields): void {
    this.fields = { ...this.fields, ...fields };
  }

  /** The next signing says goodbye (leaving=true). */
  markLeaving(): void {
    this.leaving = true;
  }

  /** Our own entry for gossip, once signed. */
  entries(): GossipEntry[] {
    if (this.signed === undefined || this.current === undefined) return [];
    return [{ endpointId: this.endpointId, seq: this.current.announcementSeq, signed: this.signed }];
  }

  /** Re-signs with the next sequence number; calls are serialised. */
  resign(): Promise<void> {
    const run = this.chain.then(async () => {
      const fields = this.fields;
      const announcement = create(PeerAnnouncementSchema, {
        ...fields,
        version: fields.version || this.init.version,
        endpointId: endpointIdToBytes(this.endpointId),
        meshId: this.init.meshId(),
        listenAddrs: this.init.addresses(),
        issuedAtMs: BigInt(Math.floor(this.init.clock())),
        announcementSeq: this.init.sequence.next(),
        leaving: this.leaving,
      });
      this.signed = await signAnnouncement(this.init.identity.privateKey, announcement);
      this.current = announcement;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}
