import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ConfigError } from '../errors.ts';
import { writeFileAtomic } from '../files/atomic-write.ts';
import {
  type AdmitRequest,
  type AdmitResponse,
  AdmitResponseSchema,
  InviteSchema,
  MembershipSchema,
  type OwnerSigned,
  OwnerSignedSchema,
  RevocationSchema,
} from '../proto/gen/mesh_pb.js';
import { endpointIdFromBytes, endpointIdToBytes } from './identity.ts';
import type { EndpointId } from './types.ts';

/**
 * Revocable membership (issue #15, docs/membership.md). A mesh created by this version has an
 * owner key (Ed25519, held by the node that created it, `<data-dir>/mesh-owner.key`). Members
 * carry owner-signed certificates in their announcements; the owner admits newcomers that
 * present an owner-signed invite (its own, which may expire, or a member's standing invite,
 * void once that member is revoked), and publishes owner-signed revocations that every node
 * persists and enforces. A mesh from before (no owner) keeps its mesh-id-only membership.
 */

export const OWNER_KEY_FILE = 'mesh-owner.key';
export const MEMBERSHIP_FILE = 'membership.json';
/** Revocations held (and gossiped on a full exchange) at most. */
export const MAX_REVOCATIONS = 4096;

const DOMAIN = {
  membership: 'mesh-llm-membership-v1:',
  invite: 'mesh-llm-invite-v1:',
  revocation: 'mesh-llm-revocation-v1:',
} as const;
type Kind = keyof typeof DOMAIN;
const PROOF_DOMAIN = Buffer.from('mesh-llm-membership-proof-v1:');

export type AdmissionRefusal = 'revoked' | 'not_admitted';

function signingBytes(kind: Kind, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(DOMAIN[kind]), body]);
}

function rawPublicKey(key: KeyObject): Uint8Array {
  const der = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return new Uint8Array(der.subarray(der.byteLength - 32));
}

function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  // SPKI prefix of an Ed25519 key (RFC 8410).
  const prefix = Buffer.from('302a300506032b6570032100', 'hex');
  return createPublicKey({ key: Buffer.concat([prefix, raw]), format: 'der', type: 'spki' });
}

/** Opens an owner-signed body: its bytes if the signature is `owner`'s, else undefined. */
export function openOwnerSigned(kind: Kind, owner: Uint8Array, signed: OwnerSigned | undefined) {
  if (signed === undefined || signed.signature.byteLength !== 64 || owner.byteLength !== 32) return undefined;
  try {
    return verify(null, signingBytes(kind, signed.body), publicKeyFromRaw(owner), signed.signature)
      ? signed.body
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Proof, to a peer not yet known as a member, that this node knows the mesh id — bound to both
 * Noise-authenticated peer ids, so it cannot be replayed to anyone else and reveals nothing.
 */
export function membershipProof(meshId: string, initiator: Uint8Array, responder: Uint8Array): Uint8Array {
  return new Uint8Array(
    createHmac('sha256', meshId).update(PROOF_DOMAIN).update(initiator).update(responder).digest(),
  );
}

export function checkMembershipProof(
  meshId: string,
  initiator: Uint8Array,
  responder: Uint8Array,
  proof: Uint8Array,
): boolean {
  const expected = membershipProof(meshId, initiator, responder);
  return proof.byteLength === expected.byteLength && timingSafeEqual(proof, expected);
}

interface Persisted {
  version: 1;
  owner?: string;
  certificate?: string;
  invite?: string;
  revocations?: string[];
}

/** This node's membership: owner key (if it created the mesh), certificate, revocations. */
export class MeshMembership {
  private readonly dataDir: string | undefined;
  private ownerKey: KeyObject | undefined;
  private ownerRaw: Uint8Array | undefined;
  private cert: OwnerSigned | undefined;
  private standingInvite: OwnerSigned | undefined;
  private readonly revoked = new Map<EndpointId, OwnerSigned>();
  /** Endpoint → the certificate signature already verified for it. */
  private readonly verified = new Map<EndpointId, string>();

  constructor(dataDir: string | undefined) {
    this.dataDir = dataDir;
  }

  /** The mesh owner's public key (32 bytes), or undefined in a mesh without one. */
  get owner(): Uint8Array | undefined {
    return this.ownerRaw;
  }

  get isOwner(): boolean {
    return this.ownerKey !== undefined;
  }

  get certificate(): OwnerSigned | undefined {
    return this.cert;
  }

  /** Needs a certificate before its announcement is accepted. */
  get needsAdmission(): boolean {
    return this.ownerRaw !== undefined && this.cert === undefined;
  }

  async load(): Promise<void> {
    if (this.dataDir === undefined) return;
    let text: string | undefined;
    try {
      text = await readFile(join(this.dataDir, MEMBERSHIP_FILE), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      return;
    }
    let state: Persisted;
    try {
      state = JSON.parse(text) as Persisted;
    } catch {
      throw new ConfigError(`${MEMBERSHIP_FILE} in the data dir is not valid JSON (fix or delete it)`);
    }
    if (typeof state.owner === 'string' && /^[0-9a-f]{64}$/.test(state.owner)) {
      this.ownerRaw = new Uint8Array(Buffer.from(state.owner, 'hex'));
    }
    this.cert = decodeSigned(state.certificate);
    this.standingInvite = decodeSigned(state.invite);
    for (const text of state.revocations ?? []) this.addRevocation(decodeSigned(text));
    if (this.ownerRaw !== undefined) {
      const pem = await readFile(join(this.dataDir, OWNER_KEY_FILE), 'utf8').catch(() => undefined);
      if (pem !== undefined) {
        const key = createPrivateKey(pem);
        if (Buffer.from(rawPublicKey(key)).equals(this.ownerRaw)) this.ownerKey = key;
      }
    }
  }

  /** This node creates the mesh: a fresh owner key, and its own certificate. */
  async createOwner(endpointId: EndpointId, nowMs: number): Promise<void> {
    const { privateKey } = generateKeyPairSync('ed25519');
    this.ownerKey = privateKey;
    this.ownerRaw = rawPublicKey(privateKey);
    this.revoked.clear();
    this.cert = this.issue('membership', MembershipSchema, {
      owner: this.ownerRaw,
      endpointId: endpointIdToBytes(endpointId),
      issuedAtMs: BigInt(nowMs),
    });
    // The owner's standing invite: what a plain `mesh-llm invite` prints, the same each time.
    this.standingInvite = this.issue('invite', InviteSchema, {
      owner: this.ownerRaw,
      inviteId: randomBytes(16),
      expiresAtMs: 0n,
    });
    if (this.dataDir !== undefined) {
      await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(
        join(this.dataDir, OWNER_KEY_FILE),
        privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      );
    }
    await this.save();
  }

  /** Joining another mesh: its owner (undefined for a mesh from before owners) replaces ours. */
  async adopt(owner: Uint8Array | undefined): Promise<void> {
    this.ownerKey = undefined;
    this.ownerRaw = owner;
    this.cert = undefined;
    this.standingInvite = undefined;
    this.revoked.clear();
    this.verified.clear();
    if (this.dataDir !== undefined) await rm(join(this.dataDir, OWNER_KEY_FILE), { force: true });
    await this.save();
  }

  isRevoked(endpointId: EndpointId): boolean {
    return this.revoked.has(endpointId);
  }

  /** Why an origin's announcement is not admitted in this mesh, or undefined when it is. */
  check(endpointId: EndpointId, certificate: OwnerSigned | undefined): AdmissionRefusal | undefined {
    if (this.revoked.has(endpointId)) return 'revoked';
    const owner = this.ownerRaw;
    if (owner === undefined) return undefined;
    if (certificate === undefined) return 'not_admitted';
    const signature = Buffer.from(certificate.signature).toString('base64');
    if (this.verified.get(endpointId) === signature) return undefined;
    const body = openOwnerSigned('membership', owner, certificate);
    if (body === undefined) return 'not_admitted';
    const membership = decode(MembershipSchema, body);
    if (
      membership === undefined ||
      !Buffer.from(membership.owner).equals(owner) ||
      endpointIdFromBytes(membership.endpointId) !== endpointId
    ) {
      return 'not_admitted';
    }
    if (this.verified.size >= MAX_REVOCATIONS) this.verified.clear();
    this.verified.set(endpointId, signature);
    return undefined;
  }

  /** An invite for a token: the owner's (may expire), or this member's standing invite. */
  invite(expiresInMs: number | undefined, nowMs: number): OwnerSigned | undefined {
    if (expiresInMs === undefined) return this.standingInvite;
    if (this.ownerKey === undefined || this.ownerRaw === undefined) {
      throw new ConfigError('only the node that created this mesh (its owner) can make expiring invites');
    }
    return this.issue('invite', InviteSchema, {
      owner: this.ownerRaw,
      inviteId: randomBytes(16),
      expiresAtMs: expiresInMs === undefined ? 0n : BigInt(nowMs + expiresInMs),
    });
  }

  /**
   * The owner's answer to an admission request: a certificate and a standing invite, or why
   * not. `requester` is the authenticated peer that sent it (the joiner, or a member on its behalf).
   */
  admit(
    request: AdmitRequest,
    requester: EndpointId,
    isMember: (id: EndpointId) => boolean,
    nowMs: number,
  ): AdmitResponse {
    const refuse = (error: string) => create(AdmitResponseSchema, { error });
    const owner = this.ownerRaw;
    if (this.ownerKey === undefined || owner === undefined) return refuse('not the owner of this mesh');
    if (request.endpointId.byteLength !== 32) return refuse('malformed request');
    const joiner = endpointIdFromBytes(request.endpointId);
    if (requester !== joiner && !isMember(requester))
      return refuse('only a member may ask on behalf of another');
    if (this.revoked.has(joiner) || this.revoked.has(requester)) return refuse('revoked');
    const body = openOwnerSigned('invite', owner, request.invite);
    const invite = body === undefined ? undefined : decode(InviteSchema, body);
    if (invite === undefined || !Buffer.from(invite.owner).equals(owner))
      return refuse('the invite is not this mesh owner’s');
    if (invite.expiresAtMs !== 0n && invite.expiresAtMs < BigInt(nowMs))
      return refuse('the invite has expired');
    if (invite.issuedTo.byteLength === 32 && this.revoked.has(endpointIdFromBytes(invite.issuedTo))) {
      return refuse('the invite was issued to a member that has been revoked');
    }
    return create(AdmitResponseSchema, {
      membership: this.issue('membership', MembershipSchema, {
        owner,
        endpointId: request.endpointId,
        issuedAtMs: BigInt(nowMs),
        invitedBy: invite.issuedTo,
      }),
      invite: this.issue('invite', InviteSchema, {
        owner,
        inviteId: randomBytes(16),
        expiresAtMs: 0n,
        issuedTo: request.endpointId,
      }),
    });
  }

  /** Takes the owner's answer for this node; false when it does not certify `self`. */
  async accept(response: AdmitResponse, self: EndpointId): Promise<boolean> {
    if (this.check(self, response.membership) !== undefined || response.membership === undefined)
      return false;
    this.cert = response.membership;
    this.standingInvite = response.invite;
    await this.save();
    return true;
  }

  /** The owner revokes a member; returns the signed revocation to publish. */
  async revoke(endpointId: EndpointId, nowMs: number): Promise<OwnerSigned> {
    if (this.ownerKey === undefined || this.ownerRaw === undefined) {
      throw new ConfigError('only the node that created this mesh (its owner) can revoke members');
    }
    const signed = this.issue('revocation', RevocationSchema, {
      owner: this.ownerRaw,
      endpointId: endpointIdToBytes(endpointId),
      revokedAtMs: BigInt(nowMs),
    });
    this.addRevocation(signed);
    await this.save();
    return signed;
  }

  /** A revocation from gossip: the endpoint it revokes when valid and new, else undefined. */
  addRevocation(signed: OwnerSigned | undefined): EndpointId | undefined {
    const owner = this.ownerRaw;
    if (owner === undefined || this.revoked.size >= MAX_REVOCATIONS) return undefined;
    const body = openOwnerSigned('revocation', owner, signed);
    const revocation = body === undefined ? undefined : decode(RevocationSchema, body);
    if (revocation === undefined || revocation.endpointId.byteLength !== 32) return undefined;
    if (!Buffer.from(revocation.owner).equals(owner)) return undefined;
    const endpointId = endpointIdFromBytes(revocation.endpointId);
    if (this.revoked.has(endpointId)) return undefined;
    this.revoked.set(endpointId, signed!);
    this.verified.delete(endpointId);
    return endpointId;
  }

  revocations(): OwnerSigned[] {
    return [...this.revoked.values()];
  }

  async save(): Promise<void> {
    if (this.dataDir === undefined) return;
    const state: Persisted = {
      version: 1,
      owner: this.ownerRaw && Buffer.from(this.ownerRaw).toString('hex'),
      certificate: encodeSigned(this.cert),
      invite: encodeSigned(this.standingInvite),
      revocations: this.revocations().map((r) => encodeSigned(r)!),
    };
    await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.dataDir, MEMBERSHIP_FILE), `${JSON.stringify(state, null, 2)}\n`);
  }

  private issue<T extends typeof MembershipSchema | typeof InviteSchema | typeof RevocationSchema>(
    kind: Kind,
    schema: T,
    fields: Parameters<typeof create<T>>[1],
  ): OwnerSigned {
    const body = toBinary(schema, create(schema, fields));
    const signature = sign(null, signingBytes(kind, body), this.ownerKey!);
    return create(OwnerSignedSchema, { body, signature: new Uint8Array(signature) });
  }
}

function decode<T extends typeof MembershipSchema | typeof InviteSchema | typeof RevocationSchema>(
  schema: T,
  bytes: Uint8Array,
) {
  try {
    return fromBinary(schema, bytes);
  } catch {
    return undefined;
  }
}

export function encodeSigned(signed: OwnerSigned | undefined): string | undefined {
  return signed === undefined
    ? undefined
    : Buffer.from(toBinary(OwnerSignedSchema, signed)).toString('base64url');
}

export function decodeSigned(text: unknown): OwnerSigned | undefined {
  if (typeof text !== 'string' || text.length > 4096 || !/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    return fromBinary(OwnerSignedSchema, Buffer.from(text, 'base64url'));
  } catch {
    return undefined;
  }
}
