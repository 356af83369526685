import type { PeerId, Startable } from '@libp2p/interface';
import { ConfigError } from '../../errors.ts';
import type { OwnerSigned } from '../../proto/gen/mesh_pb.js';
import { Admission, PROTOCOL_ADMIT } from '../admission.ts';
import { endpointIdFromPeerId, isEndpointId, peerIdFromEndpointId } from '../identity.ts';
import { encodeInviteToken, type InviteToken } from '../invite.ts';
import { decodeSigned, encodeSigned, type MeshMembership } from '../membership.ts';
import type { EndpointId, LocalAnnouncementFields } from '../types.ts';
import { anySignal, type MeshComponents, type MeshContext, short, timeoutSignal } from './context.ts';
import type { OpenedStream } from './dialer.ts';

const ADMIT_DIAL_TIMEOUT_MS = 10_000;

export interface AccessInit {
  /** This node creates a new mesh (no mesh id given): it holds the owner key. */
  createdHere: boolean;
  /** Whether invite peers are known: a node that joins a mesh creates no owner key. */
  hasBootstrapPeers: () => boolean;
  /** A new outbound stream to a member (the dialer's): a joiner's request goes on to the owner node. */
  negotiate: (endpointId: EndpointId, protocol: string, signal: AbortSignal) => Promise<OpenedStream>;
  /** Gossips the revocations to the members at once. */
  pushRevocations: () => Promise<void>;
  /** Told of each peer revoked (its warm streams are dropped). */
  onRevoked: (endpointId: EndpointId) => void;
}

/** Whether `peer` is a revoked member: it gets no connection either way (docs/membership.md). */
export function isRevokedPeer(membership: MeshMembership, peer: PeerId): boolean {
  const id = endpointIdFromPeerId(peer);
  return id !== undefined && membership.isRevoked(id);
}

/**
 * Who belongs to a mesh with an owner (docs/membership.md): the owner key of a mesh created
 * here, admission (a joiner trades its token's invite for a certificate, through any member),
 * owner-signed revocations (published, stored, enforced), and invite tokens.
 */
export class AccessService implements Startable {
  private readonly context: MeshContext;
  private readonly init: AccessInit;
  private readonly components: MeshComponents;
  private readonly admission: Admission;
  /** The invite of the token joined with, until the owner has admitted this node. */
  private pendingInvite: OwnerSigned | undefined;
  private started = false;

  constructor(context: MeshContext, init: AccessInit, components: MeshComponents) {
    this.context = context;
    this.init = init;
    this.components = components;
    this.admission = new Admission({
      membership: context.membership,
      self: context.endpointId,
      clock: context.clock,
      isMember: (id) => context.table.get(id) !== undefined,
      ownerNode: () => context.table.list().find((r) => r.announcement.meshOwnerNode)?.endpointId,
      openStream: async (id, protocol, signal) =>
        (await init.negotiate(id, protocol, anySignal(signal, context.stopSignal))).stream,
    });
  }

  /** Loads the membership state (before libp2p starts); a node creating a mesh makes its owner key. */
  async load(): Promise<void> {
    const { membership, local } = this.context;
    await membership.load();
    if (this.init.createdHere && !this.init.hasBootstrapPeers() && membership.owner === undefined) {
      await membership.createOwner(this.context.endpointId, this.context.clock());
    }
    local.merge(this.fields());
  }

  async start(): Promise<void> {
    this.started = true;
    // Joiners are not members yet: admission is served below the member check, rate-limited.
    await this.components.registrar.handle(
      PROTOCOL_ADMIT,
      (stream, connection) => {
        const remote = endpointIdFromPeerId(connection.remotePeer);
        if (remote === undefined) stream.abort(new Error('peer identity is not Ed25519'));
        else void this.admission.serve(stream, remote);
      },
      { runOnLimitedConnection: true, maxInboundStreams: 4, maxOutboundStreams: 4 },
    );
  }

  stop(): void {
    this.started = false;
  }

  /** Membership facts for status pages and tests. */
  status(): { owned: boolean; owner: boolean; admitted: boolean; revoked: number } {
    const { membership } = this.context;
    return {
      owned: membership.owner !== undefined,
      owner: membership.isOwner,
      admitted: membership.certificate !== undefined,
      revoked: membership.revocations().length,
    };
  }

  /** An invite token for these addresses: signed by the owner key's invite in a mesh with an owner. */
  inviteToken(addrs: string[], options: { expiresInMs?: number }): string {
    const { membership } = this.context;
    const meshId = this.context.meshId();
    const owner = membership.owner;
    if (owner === undefined) {
      if (options.expiresInMs !== undefined) {
        throw new ConfigError('this mesh has no owner key: its invites cannot expire');
      }
      return encodeInviteToken(meshId, addrs);
    }
    const invite = encodeSigned(membership.invite(options.expiresInMs, this.context.clock()));
    if (invite === undefined) {
      throw new ConfigError('this node holds no invite for its mesh yet (not admitted by its owner)');
    }
    return encodeInviteToken(meshId, addrs, { owner: Buffer.from(owner).toString('hex'), invite });
  }

  /**
   * Takes up an invite token: one for another mesh, or one naming another owner, moves this
   * node over (`switchMesh`, then the token's owner); a token without an owner for our own
   * mesh never downgrades it (certificates stay required).
   */
  async join(invite: InviteToken, switchMesh: () => void): Promise<void> {
    const { membership, local, log } = this.context;
    const owner = invite.owner === undefined ? undefined : new Uint8Array(Buffer.from(invite.owner, 'hex'));
    const ownerChanged =
      owner !== undefined && (membership.owner === undefined || !Buffer.from(owner).equals(membership.owner));
    if (invite.mesh !== this.context.meshId() || ownerChanged) {
      // The mesh id is the members' secret: never logged.
      log.info('joining the mesh of the invite');
      switchMesh();
      await membership.adopt(owner);
      local.merge(this.fields());
      if (this.started) await local.resign();
    }
    if (membership.needsAdmission) this.pendingInvite = decodeSigned(invite.invite);
  }

  /** In a mesh with an owner, trades the token's invite for a certificate through `peer`. */
  async admitVia(peer: PeerId): Promise<void> {
    const invite = this.pendingInvite;
    const { membership, local, log } = this.context;
    if (!membership.needsAdmission || invite === undefined) return;
    const stream = await this.components.connectionManager.openStream(peer, [PROTOCOL_ADMIT], {
      signal: timeoutSignal(this.context, ADMIT_DIAL_TIMEOUT_MS),
      runOnLimitedConnection: true,
    });
    await this.admission.request(stream, invite);
    this.pendingInvite = undefined;
    log.info('admitted to the mesh by its owner');
    local.merge(this.fields());
    await local.resign();
  }

  /** The owner revokes a member: published to every node, enforced by each, kept across restarts. */
  async revoke(endpointId: EndpointId): Promise<void> {
    if (!isEndpointId(endpointId)) throw new ConfigError('PEER must be a 64-character hex endpoint id');
    if (endpointId === this.context.endpointId) throw new ConfigError('the owner node cannot revoke itself');
    await this.context.membership.revoke(endpointId, this.context.clock());
    await this.apply(endpointId);
    if (this.started) await this.init.pushRevocations();
  }

  /** Applies revocations received by gossip (verified, stored, enforced, passed on). */
  async ingest(list: readonly OwnerSigned[]): Promise<void> {
    const { membership, log } = this.context;
    const fresh: EndpointId[] = [];
    for (const signed of list) {
      const id = membership.addRevocation(signed);
      if (id !== undefined) fresh.push(id);
    }
    if (fresh.length === 0) return;
    await membership.save().catch((err: Error) => {
      log.warn({ err: err.message }, 'could not persist revocations');
    });
    for (const id of fresh) await this.apply(id);
    // Passed on at once; the heartbeat's exchanges repair any miss.
    void this.init.pushRevocations();
  }

  private fields(): LocalAnnouncementFields {
    const { membership } = this.context;
    return { membership: membership.certificate, meshOwnerNode: membership.isOwner };
  }

  private async apply(endpointId: EndpointId): Promise<void> {
    this.context.table.forget(endpointId);
    this.init.onRevoked(endpointId);
    this.context.log.info({ peer: short(endpointId) }, 'peer revoked by the mesh owner');
    if (this.started) {
      await this.components.connectionManager
        .closeConnections(peerIdFromEndpointId(endpointId))
        .catch(() => undefined);
    }
  }
}

export function meshAccess(
  context: MeshContext,
  init: AccessInit,
): (components: MeshComponents) => AccessService {
  return (components) => new AccessService(context, init, components);
}
