import { randomBytes } from 'node:crypto';
import type { Connection, Libp2p, PrivateKey } from '@libp2p/interface';
import { ConfigError, UpstreamError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { PeerAnnouncement } from '../proto/gen/mesh_pb.js';
import { identityFromPrivateKey, isEndpointId, type MeshIdentity, peerIdFromEndpointId } from './identity.ts';
import { decodeInviteToken, isValidMeshId } from './invite.ts';
import {
  createMeshNode,
  type Listening,
  type MeshServices,
  type NodeOptions,
  planListening,
} from './libp2p-node.ts';
import { LocalAnnouncement } from './local-announcement.ts';
import { MeshMembership } from './membership.ts';
import { type ConnectionSummary, peerLink, summarize } from './peer-links.ts';
import { PeerTable } from './peer-table.ts';
import { AnnouncementSequence } from './sequence.ts';
import { meshAccess } from './services/access.ts';
import { meshAddressWatch } from './services/address-watch.ts';
import { type AppHandler, meshAppStreams } from './services/app-streams.ts';
import { meshBootstrap } from './services/bootstrap.ts';
import type { MeshContext } from './services/context.ts';
import { meshDialer } from './services/dialer.ts';
import { meshGossip } from './services/gossip-service.ts';
import { meshMembership } from './services/membership.ts';
import { meshRedialGuard } from './services/redial-guard.ts';
import { meshStaleConnections } from './services/stale-connections.ts';
import { meshTransitiveLiveness, TRANSITIVE_CHECK_MS } from './services/transitive-liveness.ts';
import type {
  ByteStream,
  EndpointId,
  LocalAnnouncementFields,
  MeshService,
  PeerEvent,
  PeerLink,
  PeerRecord,
  StreamTapEvent,
} from './types.ts';

export interface MeshOptions extends NodeOptions {
  /** Node identity: a libp2p Ed25519 key, or an identity from identity.ts. One is required. */
  privateKey?: PrivateKey;
  identity?: MeshIdentity;
  /** Mesh to belong to; a fresh random id (a new mesh) when absent. join() adopts the token's. */
  meshId?: string;
  /** Default 60000. */
  heartbeatMs?: number;
  /** How often hosts known only through gossip are checked through members (0 = never). Default 10000. */
  transitiveCheckMs?: number;
  announcement?: LocalAnnouncementFields;
  version: string;
  logger: Logger;
  /** Sees every chunk of every app-protocol stream (gossip excluded), forwarded ones too. */
  streamTap?: (event: StreamTapEvent) => void;
  /** Where the announcement sequence floor is persisted across restarts. */
  dataDir?: string;
  clock?: () => number;
  /** How long an inbound app stream waits for an unknown remote's announcement. Default 5000. */
  memberWaitMs?: number;
  /** Pre-negotiated HTTP streams kept per recently used host (0 disables). Default 8, topped up at 2. */
  warmStreams?: number;
}

const WARM_STREAMS_DEFAULT = 8;

/**
 * The mesh of a LAN: the one fresh `--mdns` nodes (no token, no mesh yet) join, so that two of
 * them form one mesh without a token. Its id is no secret: it trusts everyone on the LAN.
 */
export const LAN_MESH_ID = 'mesh-llm-lan';

export async function createLibp2pMesh(options: MeshOptions): Promise<Libp2pMesh> {
  const identity =
    options.identity ??
    (options.privateKey !== undefined ? identityFromPrivateKey(options.privateKey) : undefined);
  if (identity === undefined) throw new ConfigError('createLibp2pMesh needs a privateKey or identity');
  const meshId = options.meshId ?? randomBytes(16).toString('hex');
  if (!isValidMeshId(meshId)) throw new ConfigError('mesh id must be 1-128 characters of [A-Za-z0-9._:-]');
  const listening = await planListening(options);
  return new Libp2pMesh(options, identity, meshId, listening).build();
}

/**
 * The MeshService over js-libp2p: a facade over the mesh's libp2p services (services/), wired
 * together on the node libp2p-node.ts builds, and over the state they share (peer table, local
 * announcement, membership). Extra methods are for status pages and tests.
 */
export class Libp2pMesh implements MeshService {
  readonly endpointId: EndpointId;
  readonly peerId: string;
  private currentMeshId: string;
  private readonly options: MeshOptions;
  private readonly listening: Listening;
  private readonly log: Logger;
  private readonly heartbeatMs: number;
  private readonly table: PeerTable;
  private readonly sequence: AnnouncementSequence;
  private readonly local: LocalAnnouncement;
  private readonly context: MeshContext;
  private readonly stopController = new AbortController();
  // Set by build(), before anyone else sees the instance.
  private libp2p!: Libp2p<MeshServices>;
  private started = false;
  private stopping = false;
  private detachNode: (() => void) | undefined;
  private readonly membership: MeshMembership;

  constructor(options: MeshOptions, identity: MeshIdentity, meshId: string, listening: Listening) {
    this.options = options;
    this.endpointId = identity.endpointId;
    this.peerId = identity.peerId.toString();
    this.currentMeshId = meshId;
    this.listening = listening;
    this.log = options.logger;
    this.heartbeatMs = options.heartbeatMs ?? 60_000;
    const clock = options.clock ?? Date.now;
    this.membership = new MeshMembership(options.dataDir);
    this.sequence = new AnnouncementSequence({ dataDir: options.dataDir, clock });
    this.table = new PeerTable({
      selfEndpointId: this.endpointId,
      meshId: () => this.currentMeshId,
      clock,
      isConnected: (id) => this.isConnected(id),
      leaveRelayMs: this.heartbeatMs * 3,
      admit: (id, announcement) => this.membership.check(id, announcement.membership),
    });
    this.local = new LocalAnnouncement({
      identity,
      sequence: this.sequence,
      fields: options.announcement ?? {},
      version: options.version,
      clock,
      meshId: () => this.currentMeshId,
      addresses: () => this.addresses(),
    });
    this.context = {
      identity,
      endpointId: this.endpointId,
      table: this.table,
      local: this.local,
      log: this.log,
      heartbeatMs: this.heartbeatMs,
      clock,
      stopSignal: this.stopController.signal,
      membership: this.membership,
      meshId: () => this.currentMeshId,
      invited: (peer) => this.libp2p.services.meshBootstrap.has(peer.toString()),
      ingestRevocations: (list) => this.libp2p.services.meshAccess.ingest(list),
    };
  }

  /** Creates the libp2p node with the mesh's services (not started). */
  async build(): Promise<this> {
    const { options, context } = this;
    const relayOnly = options.reachableOnlyViaRelay === true;
    const node = await createMeshNode(context, options, this.listening, {
      meshGossip: meshGossip(context),
      meshMembership: meshMembership(context, {
        redialMembers: !relayOnly,
        onDisconnect: (id) => this.libp2p.services.meshAppStreams.drop(id),
      }),
      meshBootstrap: meshBootstrap(context, {
        mdns: options.mdns === true,
        onConnected: async (peer) => {
          await this.libp2p.services.meshAccess.admitVia(peer);
          await this.libp2p.services.meshGossip.exchange(peer);
        },
      }),
      meshDialer: meshDialer(context, {
        lostConnection: (id) => this.libp2p.services.meshMembership.connectionLost(id),
      }),
      meshAccess: meshAccess(context, {
        createdHere: options.meshId === undefined,
        hasBootstrapPeers: () => this.libp2p.services.meshBootstrap.all().length > 0,
        negotiate: (id, protocol, signal) => this.libp2p.services.meshDialer.negotiate(id, protocol, signal),
        pushRevocations: () => this.libp2p.services.meshGossip.pushRevocations(),
        onRevoked: (id) => this.libp2p.services.meshAppStreams.drop(id),
      }),
      meshStaleConnections: meshStaleConnections(context),
      meshRedialGuard: meshRedialGuard(context),
      meshAddressWatch: meshAddressWatch(context, {
        addresses: () => this.addresses(),
        active: () => this.started && !this.stopping,
        reannounce: () => this.updateAnnouncement({}),
      }),
      meshTransitiveLiveness: meshTransitiveLiveness(context, {
        intervalMs: options.transitiveCheckMs ?? TRANSITIVE_CHECK_MS,
        openForwarded: (via, target, signal) => this.openForwardedStream(via, target, { signal }),
        isLost: (id) => this.libp2p.services.meshMembership.isLost(id),
        markUnreachable: (id, seq) => this.libp2p.services.meshMembership.markUnreachable(id, seq),
      }),
      meshAppStreams: meshAppStreams(context, {
        memberWaitMs: options.memberWaitMs ?? 5_000,
        streamTap: options.streamTap,
        warmStreams: options.warmStreams ?? WARM_STREAMS_DEFAULT,
        negotiate: (id, protocol, signal) => this.libp2p.services.meshDialer.negotiate(id, protocol, signal),
        openStream: (target, protocol, signal) => this.openStream(target, protocol, { signal }),
      }),
    });
    this.libp2p = node.libp2p;
    this.detachNode = node.detach;
    return this;
  }

  get meshId(): string {
    return this.currentMeshId;
  }

  async start(): Promise<void> {
    if (this.started) return;
    if (this.stopping) throw new ConfigError('a stopped mesh node cannot be restarted; create a new one');
    await this.sequence.load();
    await this.libp2p.services.meshAccess.load();
    try {
      await this.libp2p.start();
    } catch (err) {
      await Promise.resolve(this.libp2p.stop()).catch(() => undefined);
      throw new ConfigError(`cannot start the mesh listener: ${(err as Error).message}`, { cause: err });
    }
    this.started = true;
    await this.local.resign();
    this.log.info(
      { endpointId: this.endpointId, peerId: this.peerId, addrs: this.addresses().length },
      'mesh node started',
    );
    const bootstrap = this.libp2p.services.meshBootstrap;
    const boots = bootstrap.all();
    if (boots.length > 0) await bootstrap.connect(boots);
  }

  async stop(): Promise<void> {
    if (!this.started || this.stopping) return;
    this.stopping = true;
    try {
      // Say goodbye: a final announcement with leaving=true reaches every neighbour.
      this.local.markLeaving();
      await this.local.resign();
      await this.libp2p.services.meshGossip.broadcastFinal();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'leave announcement failed');
    }
    await this.shutdown();
  }

  /** Stops without announcing the leave, as a crash would (tests, fatal errors). */
  async abort(): Promise<void> {
    if (!this.started || this.stopping) return;
    this.stopping = true;
    await this.shutdown();
  }

  private async shutdown(): Promise<void> {
    this.stopController.abort();
    await this.sequence.persist().catch((err: Error) => {
      this.log.warn({ err: err.message }, 'could not persist the announcement sequence');
    });
    this.detachNode?.();
    await this.libp2p.stop();
    this.started = false;
    this.log.info({ endpointId: this.endpointId }, 'mesh node stopped');
  }

  addresses(): string[] {
    if (!this.started) return [];
    return this.libp2p.getMultiaddrs().map((ma) => ma.toString());
  }

  inviteToken(options: { expiresInMs?: number } = {}): string {
    const addrs = this.addresses();
    if (addrs.length === 0) {
      throw new ConfigError(this.reachabilityProblem() ?? 'this node has no dialable address yet');
    }
    return this.libp2p.services.meshAccess.inviteToken(addrs, options);
  }

  /** The owner revokes a member: published to every node, enforced by each, kept across restarts. */
  revoke(endpointId: EndpointId): Promise<void> {
    return this.libp2p.services.meshAccess.revoke(endpointId);
  }

  /** Membership facts for status pages and tests. */
  membershipStatus(): { owned: boolean; owner: boolean; admitted: boolean; revoked: number } {
    return this.libp2p.services.meshAccess.status();
  }

  reachabilityProblem(): string | undefined {
    const service = this.libp2p.services.meshReachability;
    if (service === undefined) {
      return this.addresses().length === 0
        ? 'this node waits for a relay reservation (it has no address of its own)'
        : undefined;
    }
    return service.problem(
      this.started ? this.libp2p.getMultiaddrs() : [],
      this.listening.plan.port || undefined,
    );
  }

  link(endpointId: EndpointId): PeerLink {
    return peerLink(this.started && isEndpointId(endpointId) ? this.connections(endpointId) : []);
  }

  async join(token: string): Promise<void> {
    const invite = decodeInviteToken(token);
    await this.libp2p.services.meshAccess.join(invite, () => {
      this.currentMeshId = invite.mesh;
      this.table.reset();
    });
    const bootstrap = this.libp2p.services.meshBootstrap;
    const peers = bootstrap.add(invite.addrs, this.peerId);
    if (this.started && peers.length > 0) await bootstrap.connect(peers);
  }

  /** Members, less those whose connection died and stayed dead (until they announce again). */
  peers(): PeerRecord[] {
    const membership = this.libp2p.services.meshMembership;
    return this.table.list().filter((p) => !membership.isLost(p.endpointId));
  }

  peer(endpointId: EndpointId): PeerRecord | undefined {
    return this.table.get(endpointId);
  }

  onPeerEvent(listener: (event: PeerEvent) => void): () => void {
    return this.table.onEvent(listener);
  }

  async updateAnnouncement(fields: LocalAnnouncementFields): Promise<void> {
    this.local.merge(fields);
    if (!this.started || this.stopping) return;
    await this.local.resign();
    await this.libp2p.services.meshGossip.pushOwn();
  }

  /** The latest signed local announcement (for status and tests). */
  localAnnouncement(): PeerAnnouncement | undefined {
    return this.local.announcement;
  }

  /** Open libp2p connections to a peer, for status pages and tests. */
  connectionsTo(endpointId: EndpointId): ConnectionSummary[] {
    return isEndpointId(endpointId) ? summarize(this.connections(endpointId)) : [];
  }

  handle(protocol: string, handler: AppHandler): void {
    this.libp2p.services.meshAppStreams.handle(protocol, handler);
  }

  async openStream(
    endpointId: EndpointId,
    protocol: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<ByteStream> {
    if (!this.started || this.stopping) throw new UpstreamError('mesh node is not running', 'mesh_stopped');
    if (!isEndpointId(endpointId)) throw new UpstreamError('invalid endpoint id', 'peer_unknown');
    if (endpointId === this.endpointId)
      throw new UpstreamError('cannot open a mesh stream to this node itself');
    return this.libp2p.services.meshAppStreams.open(endpointId, protocol, options.signal);
  }

  /** Pre-negotiated HTTP streams ready for `endpointId` (tests, diagnostics). */
  warmStreamCount(endpointId: EndpointId): number {
    return this.libp2p.services.meshAppStreams.warmCount(endpointId);
  }

  openForwardedStream(
    via: EndpointId,
    target: EndpointId,
    options: { signal?: AbortSignal } = {},
  ): Promise<ByteStream> {
    return this.libp2p.services.meshAppStreams.openForwarded(via, target, options.signal);
  }

  private isConnected(endpointId: EndpointId): boolean {
    return this.started && this.connections(endpointId).length > 0;
  }

  private connections(endpointId: EndpointId): Connection[] {
    return this.libp2p.getConnections(peerIdFromEndpointId(endpointId));
  }
}
