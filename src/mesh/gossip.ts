import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { AbortOptions, Stream } from '@libp2p/interface';
import { GossipMessageSchema, type OwnerSigned, type SignedAnnouncement } from '../proto/gen/mesh_pb.js';
import { frameStream, MAX_FRAME_BYTES } from './frames.ts';
import { endpointIdFromBytes, endpointIdToBytes } from './identity.ts';
import type { EndpointId } from './types.ts';

/**
 * Entries (announcements, digests) one message carries at most. A sender splits or trims to
 * fit; a receiver reads the first this many and ignores the rest, never refusing the whole.
 */
export const MAX_ANNOUNCEMENTS_PER_MESSAGE = 4096;
/** Bytes of announcements per message: the frame cap less room for 4,096 digests. */
const ANNOUNCEMENT_BYTES_PER_MESSAGE = MAX_FRAME_BYTES - 512 * 1024;

export class GossipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GossipError';
  }
}

/** Origin → newest sequence number the sender holds (field 50, absent from older nodes). */
export type KnownDigests = ReadonlyMap<EndpointId, bigint>;

/** Membership fields of a gossip message (docs/membership.md). */
export interface GossipExtras {
  /** Proof of knowing the mesh id, sent instead of an announcement to a non-member. */
  proof?: Uint8Array;
  /** Owner-signed revocations. */
  revocations?: OwnerSigned[];
}

export interface GossipContent extends GossipExtras {
  announcements: SignedAnnouncement[];
  known?: KnownDigests;
}

export interface GossipReply {
  announcements: SignedAnnouncement[];
  revocations?: OwnerSigned[];
}

/** An announcement this node can pass on, with the origin and seq it was accepted under. */
export interface GossipEntry {
  endpointId: EndpointId;
  seq: bigint;
  signed: SignedAnnouncement;
}

export function encodeGossipMessage(
  announcements: SignedAnnouncement[],
  known?: KnownDigests,
  extras: GossipExtras = {},
): Uint8Array {
  const digests =
    known === undefined
      ? undefined
      : {
          digests: [...known]
            .slice(0, MAX_ANNOUNCEMENTS_PER_MESSAGE)
            .map(([id, seq]) => ({ endpointId: endpointIdToBytes(id), seq })),
        };
  return toBinary(
    GossipMessageSchema,
    create(GossipMessageSchema, {
      announcements,
      known: digests,
      membershipProof: extras.proof,
      revocations: extras.revocations?.slice(0, MAX_ANNOUNCEMENTS_PER_MESSAGE),
    }),
  );
}

export function decodeGossipMessage(bytes: Uint8Array): GossipContent {
  let message: ReturnType<typeof fromBinary<typeof GossipMessageSchema>>;
  try {
    message = fromBinary(GossipMessageSchema, bytes);
  } catch {
    throw new GossipError('gossip message does not decode');
  }
  // Past the cap (a sender from before the bounds), the rest waits for a later exchange.
  const announcements = message.announcements.slice(0, MAX_ANNOUNCEMENTS_PER_MESSAGE);
  const digests = message.known?.digests.slice(0, MAX_ANNOUNCEMENTS_PER_MESSAGE);
  const extras: GossipExtras = {
    proof: message.membershipProof.byteLength > 0 ? message.membershipProof : undefined,
    revocations: message.revocations.slice(0, MAX_ANNOUNCEMENTS_PER_MESSAGE),
  };
  if (digests === undefined) return { announcements, ...extras };
  const known = new Map<EndpointId, bigint>();
  for (const digest of digests) {
    if (digest.endpointId.byteLength !== 32)
      throw new GossipError('gossip digest has a malformed endpoint id');
    known.set(endpointIdFromBytes(digest.endpointId), digest.seq);
  }
  return { announcements, known, ...extras };
}

/**
 * What a peer lacks: entries from origins it does not list, or lists with an older seq. A peer
 * that sent no digests (a node from before them) gets everything.
 */
export function newsFor(
  entries: readonly GossipEntry[],
  known: KnownDigests | undefined,
): SignedAnnouncement[] {
  if (known === undefined) return entries.map((e) => e.signed);
  return entries.filter((e) => (known.get(e.endpointId) ?? -1n) < e.seq).map((e) => e.signed);
}

/**
 * Splits announcements into messages that each fit the entry and byte caps, in order. An
 * announcement that could never fit is dropped (the peer table refuses such sizes anyway).
 */
export function splitGossip(announcements: readonly SignedAnnouncement[]): SignedAnnouncement[][] {
  const batches: SignedAnnouncement[][] = [];
  let batch: SignedAnnouncement[] = [];
  let bytes = 0;
  for (const signed of announcements) {
    const size = signed.announcement.byteLength + signed.signature.byteLength + 16;
    if (size > ANNOUNCEMENT_BYTES_PER_MESSAGE) continue;
    if (batch.length === MAX_ANNOUNCEMENTS_PER_MESSAGE || bytes + size > ANNOUNCEMENT_BYTES_PER_MESSAGE) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(signed);
    bytes += size;
  }
  if (batch.length > 0 || batches.length === 0) batches.push(batch);
  return batches;
}

/** Initiator side of one anti-entropy exchange: send ours (and what we hold), read theirs. */
export async function requestGossip(
  stream: Stream,
  ours: SignedAnnouncement[],
  known?: KnownDigests,
  options: AbortOptions & GossipExtras = {},
): Promise<GossipContent> {
  const lp = frameStream(stream);
  await lp.write(encodeGossipMessage(ours, known, options), options);
  await stream.close(options);
  const reply = await lp.read(options);
  return decodeGossipMessage(reply.subarray());
}

/**
 * Responder side: read the initiator's message, let `respond` process it and pick
 * what to send back, then reply and half-close.
 */
export async function respondGossip(
  stream: Stream,
  respond: (theirs: GossipContent) => Promise<GossipReply>,
  options: AbortOptions = {},
): Promise<void> {
  const lp = frameStream(stream);
  const request = await lp.read(options);
  // What does not fit goes in a later exchange: the asker's digests will not list it yet.
  const reply = await respond(decodeGossipMessage(request.subarray()));
  const first = splitGossip(reply.announcements)[0]!;
  await lp.write(encodeGossipMessage(first, undefined, { revocations: reply.revocations }), options);
  await stream.close(options);
}
