import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { publicKeyFromRaw } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import {
  type PeerAnnouncement,
  PeerAnnouncementSchema,
  type SignedAnnouncement,
  SignedAnnouncementSchema,
} from '../proto/gen/mesh_pb.js';
import { endpointIdFromBytes } from './identity.ts';
import type { EndpointId } from './types.ts';

/** Domain separator prepended to the announcement bytes before signing (SPEC §4). */
export const ANNOUNCEMENT_DOMAIN = 'mesh-llm-announcement-v1:';
const DOMAIN_BYTES = new TextEncoder().encode(ANNOUNCEMENT_DOMAIN);

export type AnnouncementRejection =
  | 'malformed'
  | 'bad_signature'
  | 'stale_seq'
  | 'other_mesh'
  | 'self'
  | 'no_mesh_id'
  | 'too_large'
  | 'rate_limited'
  | 'table_full'
  | 'revoked'
  | 'not_admitted'
  | 'duplicate_origin';

/** Why an announcement was refused. Carries ids only, never the contents. */
export class AnnouncementError extends Error {
  readonly reason: AnnouncementRejection;
  constructor(reason: AnnouncementRejection, message: string) {
    super(message);
    this.name = 'AnnouncementError';
    this.reason = reason;
  }
}

export interface VerifiedAnnouncement {
  endpointId: EndpointId;
  announcement: PeerAnnouncement;
  seq: bigint;
  /** The SignedAnnouncement as received; `signed.announcement` is the exact signed bytes. */
  signed: SignedAnnouncement;
}

export function signingInput(announcementBytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(DOMAIN_BYTES.byteLength + announcementBytes.byteLength);
  out.set(DOMAIN_BYTES, 0);
  out.set(announcementBytes, DOMAIN_BYTES.byteLength);
  return out;
}

/** Signs already-encoded announcement bytes; the bytes are carried verbatim. */
export async function signAnnouncementBytes(
  privateKey: PrivateKey,
  announcementBytes: Uint8Array,
): Promise<SignedAnnouncement> {
  const signature = await privateKey.sign(signingInput(announcementBytes));
  return create(SignedAnnouncementSchema, { announcement: announcementBytes, signature });
}

export async function signAnnouncement(
  privateKey: PrivateKey,
  announcement: PeerAnnouncement,
): Promise<SignedAnnouncement> {
  return signAnnouncementBytes(privateKey, toBinary(PeerAnnouncementSchema, announcement));
}

export function encodeSignedAnnouncement(signed: SignedAnnouncement): Uint8Array {
  return toBinary(SignedAnnouncementSchema, signed);
}

export function decodeSignedAnnouncement(bytes: Uint8Array): SignedAnnouncement {
  try {
    return fromBinary(SignedAnnouncementSchema, bytes);
  } catch {
    throw new AnnouncementError('malformed', 'signed announcement does not decode');
  }
}

/** Decodes the announcement inside, keeping unknown (future) fields. */
export function decodeAnnouncement(signed: SignedAnnouncement): PeerAnnouncement {
  let announcement: PeerAnnouncement;
  try {
    announcement = fromBinary(PeerAnnouncementSchema, signed.announcement);
  } catch {
    throw new AnnouncementError('malformed', 'announcement does not decode');
  }
  if (announcement.endpointId.byteLength !== 32) {
    throw new AnnouncementError('malformed', 'announcement endpoint id is not 32 bytes');
  }
  return announcement;
}

/**
 * Checks the Ed25519 signature against the endpoint id INSIDE the announcement, so a
 * node relaying it cannot substitute fields or claim it for another identity. A caller that
 * already decoded `signed` (decodeAnnouncement) passes the result instead of decoding twice.
 */
export async function verifySignedAnnouncement(
  signed: SignedAnnouncement,
  announcement: PeerAnnouncement = decodeAnnouncement(signed),
): Promise<VerifiedAnnouncement> {
  const endpointId = endpointIdFromBytes(announcement.endpointId);
  let valid = false;
  try {
    const key = publicKeyFromRaw(announcement.endpointId);
    valid =
      signed.signature.byteLength === 64 &&
      (await key.verify(signingInput(signed.announcement), signed.signature));
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new AnnouncementError(
      'bad_signature',
      `announcement signature invalid for ${endpointId.slice(0, 16)}`,
    );
  }
  return { endpointId, announcement, seq: announcement.announcementSeq, signed };
}

/**
 * True when two announcements differ in more than the per-heartbeat refresh fields
 * (seq and issue time): such changes are pushed at once instead of waiting a heartbeat.
 */
export function announcementContentChanged(previous: PeerAnnouncement, next: PeerAnnouncement): boolean {
  const strip = (a: PeerAnnouncement) =>
    toBinary(PeerAnnouncementSchema, { ...a, announcementSeq: 0n, issuedAtMs: 0n });
  return !Buffer.from(strip(previous)).equals(Buffer.from(strip(next)));
}
