import { randomBytes } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import { quic } from '@chainsafe/libp2p-quic';
import { yamux } from '@chainsafe/libp2p-yamux';
import { autoNATv2 } from '@libp2p/autonat-v2';
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { dcutr } from '@libp2p/dcutr';
import { type Identify, identify } from '@libp2p/identify';
import type { Libp2p, PeerId, PrivateKey, Stream } from '@libp2p/interface';
import { mdns } from '@libp2p/mdns';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Ping, ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { uPnPNAT } from '@libp2p/upnp-nat';
import type { Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p, type Libp2pInit } from 'libp2p';
import { ConfigError, UpstreamError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { OwnerSigned, PeerAnnouncement } from '../proto/gen/mesh_pb.js';
import {
  announceFilter,
  bridgeInterfaceIps,
  classify,
  ownPublicAddrs,
  parseAnnounce,
} from './address-policy.ts';
import { Admission, PROTOCOL_ADMIT } from './admission.ts';
import { toByteStream } from './byte-stream.ts';
import {
  endpointIdFromPeerId,
  endpointIdToBytes,
  identityFromPrivateKey,
  isEndpointId,
  type MeshIdentity,
  peerIdFromEndpointId,
} from './identity.ts';
import { decodeInviteToken, encodeInviteToken, isValidMeshId } from './invite.ts';
import { libp2pComponentLogger } from './libp2p-logger.ts';
import { checkListenHost, type ListenPlan, listenPlan, meshPortFor } from './listen-addresses.ts';
import { LocalAnnouncement } from './local-announcement.ts';
import { MemberRelayPolicy, tableMembership } from './member-relay.ts';
import { decodeSigned, encodeSigned, MeshMembership } from './membership.ts';
import { noiseCrypto } from './noise-crypto.ts';
import { PeerTable } from './peer-table.ts';
import { circuitRelayId, isRelayed } from './race-dial.ts';
import { AnnouncementSequence } from './sequence.ts';
import { type AppHandler, type AppStreamsService, meshAppStreams } from './services/app-streams.ts';
import { type BootstrapService, meshBootstrap } from './services/bootstrap.ts';
import { anySignal, type MeshContext, short } from './services/context.ts';
import { type DialerService, meshDialer, type OpenedStream, STREAM_LIMIT } from './services/dialer.ts';
import { type GossipService, meshGossip } from './services/gossip-service.ts';
import { meshHolePunch } from './services/hole-punch.ts';
import { type MembershipService, meshMembership } from './services/membership.ts';
import { meshReachability, type ReachabilityService } from './services/reachability.ts';
import { meshStaleConnections, type StaleConnectionService } from './services/stale-connections.ts';
import {
  meshTransitiveLiveness,
  TRANSITIVE_CHECK_MS,
  type TransitiveLivenessService,
} from './services/transitive-liveness.ts';
import { coalesceTurnWrites } from './turn-coalescing.ts';
import {
  type ByteStream,
  type EndpointId,
  type LocalAnnouncementFields,
  type MeshService,
  type PeerEvent,
  type PeerLink,
  type PeerRecord,
  PROTOCOL_FORWARD,
  PROTOCOL_GOSSIP,
  PROTOCOL_HTTP,
  type StreamTapEvent,
} from './types.ts';
import { WarmStreamPool } from './warm-streams.ts';

export interface MeshOptions {
  /** Node identity: a libp2p Ed25519 key, or an identity from identity.ts. One is required. */
  privateKey?: PrivateKey;
  identity?: MeshIdentity;
  /** Mesh to belong to; a fresh random id (a new mesh) when absent. join() adopts the token's. */
  meshId?: string;
  /** An IPv4 or IPv6 address; '127.0.0.1' (default); '0.0.0.0' or '::' listen on v4 and v6. */
  listenHost?: string;
  /** 0 (default) = the port this data dir used last time if free, else any free port. */
  listenPort?: number;
  /** Addresses others reach this node on (multiaddr or host:port): advertised as they are. */
  announce?: string[];
  /** QUIC on the same port number over UDP beside TCP (hole punching needs UDP). Default false. */
  quic?: boolean;
  /** Ask the router for a port mapping over UPnP. */
  upnp?: boolean;
  /** Act as a circuit-relay-v2 server: unlimited for members, libp2p's limits for others. */
  relay?: boolean;
  /** Relay reservations held at once (default RELAY_BOUNDS.slots; strangers get half). */
  relaySlots?: number;
  /** Simulate a NATed node: no direct listen address; reachable via relay circuits only. */
  reachableOnlyViaRelay?: boolean;
  /** Also reserve a circuit on a connected mesh relay (default true; NATed nodes always do). */
  relayReservation?: boolean;
  /** Default 60000. */
  heartbeatMs?: number;
  /** How often hosts known only through gossip are checked through members (0 = never). Default 10000. */
  transitiveCheckMs?: number;
  mdns?: boolean;
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
  /** libp2p's metrics implementation (e.g. @libp2p/prometheus-metrics), passed through as is. */
  metrics?: Libp2pInit['metrics'];
}

/** The mesh's own services inside libp2p, beside libp2p's identify and ping. */
type Services = {
  identify: Identify;
  ping: Ping;
  meshGossip: GossipService;
  meshMembership: MembershipService;
  meshBootstrap: BootstrapService;
  meshDialer: DialerService;
  meshAppStreams: AppStreamsService;
  meshStaleConnections: StaleConnectionService;
  meshTransitiveLiveness: TransitiveLivenessService;
  meshReachability?: ReachabilityService;
};

// Window ≤ half of libp2p's 4 MiB read buffer, so a paused reader is never reset.
const YAMUX_MAX_WINDOW = 2 * 1024 * 1024;
const WARM_STREAMS_DEFAULT = 8;
const PING_INTERVAL_MS = 5_000;
const PING_TIMEOUT_MS = 5_000;
const WARM_STREAMS_REFILL_AT = 2;
const WARM_STREAM_IDLE_MS = 60_000;

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
  const host = options.listenHost ?? '127.0.0.1';
  checkListenHost(host);
  const requested = options.listenPort ?? 0;
  if (!Number.isInteger(requested) || requested < 0 || requested > 65535)
    throw new ConfigError(`invalid mesh port ${requested}`);
  const quic = options.quic === true;
  const announce = (options.announce ?? []).flatMap((value) => parseAnnounce(value, quic));
  const relayOnly = options.reachableOnlyViaRelay === true;
  const { port } = relayOnly
    ? { port: 0 }
    : await meshPortFor({ host, requested, quic, dataDir: options.dataDir });
  const plan = await listenPlan(host, port, quic);
  const own = relayOnly ? [] : ownPublicAddrs(plan.addrs);
  return new Libp2pMesh(options, identity, meshId, plan, [...announce, ...own]).build();
}

/**
 * The MeshService over js-libp2p: a facade over the mesh's libp2p services (gossip,
 * membership, bootstrap, dialer, app streams) and the state they share. Extra methods are
 * for status pages and tests.
 */
export class Libp2pMesh implements MeshService {
  readonly endpointId: EndpointId;
  readonly peerId: string;
  private currentMeshId: string;
  private readonly options: MeshOptions;
  private readonly plan: ListenPlan;
  private readonly announce: Multiaddr[];
  private readonly log: Logger;
  private readonly heartbeatMs: number;
  private readonly table: PeerTable;
  private readonly sequence: AnnouncementSequence;
  private readonly local: LocalAnnouncement;
  private readonly context: MeshContext;
  private readonly stopController = new AbortController();
  private readonly warm: WarmStreamPool<OpenedStream>;
  // Set by build(), before anyone else sees the instance.
  private libp2p!: Libp2p<Services>;
  private started = false;
  private stopping = false;
  private reannounceTimer: NodeJS.Timeout | undefined;
  private detachOpen: (() => void) | undefined;
  private detachSelfUpdate: (() => void) | undefined;
  private detachRelayPolicy: (() => void) | undefined;
  private readonly membership: MeshMembership;
  private readonly admission: Admission;
  /** A node that creates a mesh (no mesh id given) holds its owner key. */
  private readonly createdHere: boolean;
  /** The invite of the token joined with, until the owner has admitted this node. */
  private pendingInvite: OwnerSigned | undefined;

  constructor(
    options: MeshOptions,
    identity: MeshIdentity,
    meshId: string,
    plan: ListenPlan,
    announce: Multiaddr[],
  ) {
    this.options = options;
    this.endpointId = identity.endpointId;
    this.peerId = identity.peerId.toString();
    this.currentMeshId = meshId;
    this.plan = plan;
    this.announce = announce;
    this.log = options.logger;
    this.heartbeatMs = options.heartbeatMs ?? 60_000;
    const clock = options.clock ?? Date.now;
    this.membership = new MeshMembership(options.dataDir);
    this.createdHere = options.meshId === undefined;
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
      ingestRevocations: (list) => this.ingestRevocations(list),
    };
    this.admission = new Admission({
      membership: this.membership,
      self: this.endpointId,
      clock,
      isMember: (id) => this.table.get(id) !== undefined,
      ownerNode: () => this.table.list().find((r) => r.announcement.meshOwnerNode)?.endpointId,
      openStream: async (id, protocol, signal) =>
        (
          await this.libp2p.services.meshDialer.negotiate(
            id,
            protocol,
            anySignal(signal, this.stopController.signal),
          )
        ).stream,
    });
    const warmStreams = options.warmStreams ?? WARM_STREAMS_DEFAULT;
    this.warm = new WarmStreamPool<OpenedStream>({
      size: warmStreams,
      refillAt: Math.min(WARM_STREAMS_REFILL_AT, warmStreams - 1),
      idleMs: WARM_STREAM_IDLE_MS,
      open: (endpointId) =>
        this.libp2p.services.meshDialer.negotiate(endpointId, PROTOCOL_HTTP, this.stopController.signal),
      usable: ({ stream }) => isFresh(stream),
      // A plain close reaches the host as an empty request, which it ends quietly.
      discard: ({ stream }) => void stream.close().catch(() => stream.abort(new Error('discarded'))),
      onOpenError: (endpointId, err) =>
        this.log.debug({ peer: short(endpointId), err: (err as Error).message }, 'warm stream open failed'),
    });
  }

  /** Creates the libp2p node with the mesh's services (not started). */
  async build(): Promise<this> {
    const { options, context } = this;
    const relayOnly = options.reachableOnlyViaRelay === true;
    const services: Record<string, unknown> = {
      identify: identify(),
      ping: ping({ runOnLimitedConnection: true }),
      meshGossip: meshGossip(context),
      meshMembership: meshMembership(context, {
        redialMembers: !relayOnly,
        onDisconnect: (id) => this.warm.drop(id),
      }),
      meshBootstrap: meshBootstrap(context, {
        mdns: options.mdns === true,
        onConnected: async (peer) => {
          await this.admitVia(peer);
          await this.libp2p.services.meshGossip.exchange(peer);
        },
      }),
      meshDialer: meshDialer(context, {
        lostConnection: (id) => this.libp2p.services.meshMembership.connectionLost(id),
      }),
      meshStaleConnections: meshStaleConnections(context),
      meshTransitiveLiveness: meshTransitiveLiveness(context, {
        intervalMs: options.transitiveCheckMs ?? TRANSITIVE_CHECK_MS,
        reaches: (via, target, signal) => this.reaches(via, target, signal),
        isLost: (id) => this.libp2p.services.meshMembership.isLost(id),
        markUnreachable: (id, seq) => this.libp2p.services.meshMembership.markUnreachable(id, seq),
      }),
      meshAppStreams: meshAppStreams(context, {
        memberWaitMs: options.memberWaitMs ?? 5_000,
        wrap: (stream, protocol, remote) => this.wrap(stream, protocol, remote),
        openStream: (target, protocol, signal) => this.openStream(target, protocol, { signal }),
      }),
    };
    // A NATed node cannot be dialed directly, so hole punching must not "fix" the test setup.
    if (!relayOnly) {
      services.dcutr = dcutr();
      // DCUtR's exchange over TCP with predicted ports: what libp2p's DCUtR cannot do in Node.
      services.meshHolePunch = meshHolePunch(context);
      services.meshReachability = meshReachability(context, { announced: this.announce.length });
      // Confirms observed public addresses once four peers dialled them back (large meshes).
      services.autoNAT = autoNATv2();
    }
    if (options.upnp === true && !relayOnly) services.upnp = uPnPNAT();
    // Members relay without limits; strangers get libp2p's defaults (member-relay.ts).
    const relayPolicy = options.relay === true ? new MemberRelayPolicy(options.relaySlots) : undefined;
    if (relayPolicy !== undefined) {
      services.relay = relayPolicy.service(STREAM_LIMIT);
      this.detachRelayPolicy = relayPolicy.attach(tableMembership(this.table, this.stopController.signal));
    }
    // Every non-relay node also takes a reservation on a mesh relay when one is connected,
    // so a node behind a real NAT stays reachable; direct addresses are still dialed first.
    const listenAddrs = relayOnly ? ['/p2p-circuit'] : [...this.plan.addrs];
    if (!relayOnly && options.relay !== true && options.relayReservation !== false)
      listenAddrs.push('/p2p-circuit');
    this.libp2p = (await createLibp2p({
      privateKey: context.identity.privateKey,
      logger: libp2pComponentLogger(),
      metrics: options.metrics,
      start: false,
      addresses: {
        listen: listenAddrs,
        appendAnnounce: this.announce.map((ma) => ma.toString()),
        announceFilter: announceFilter({ loopbackOnly: this.plan.loopbackOnly }),
      },
      transports: [
        tcp(),
        ...(options.quic === true ? [quic()] : []),
        circuitRelayTransport({ maxInboundStopStreams: STREAM_LIMIT }),
      ],
      connectionEncrypters: [noise({ crypto: noiseCrypto })],
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: YAMUX_MAX_WINDOW } })],
      peerDiscovery: options.mdns === true ? [mdns({ serviceTag: 'mesh-llm.local' })] : [],
      connectionGater: {
        denyInboundRelayReservation: relayPolicy && ((peer) => relayPolicy.holdReservation(peer)),
        // A revoked member gets no connection either way (docs/membership.md).
        denyDialPeer: (peer) => this.isRevoked(peer),
        denyInboundEncryptedConnection: (peer) => this.isRevoked(peer),
        denyOutboundEncryptedConnection: (peer) => this.isRevoked(peer),
      },
      connectionManager: {
        // Members and invite peers carry KEEP_ALIVE tags: libp2p redials them when they drop
        // (1 s, then ×1.5 each try: about three minutes of tries before it gives up).
        reconnectRetries: 12,
        reconnectRetryInterval: 1_000,
        reconnectBackoffFactor: 1.5,
      },
      // Every connection is pinged this often (connection.rtt); one that stops answering is
      // closed, so a crashed peer counts as disconnected within seconds, not heartbeats.
      // The timeout is capped: libp2p's adapts upwards after failures (to 60 s), which would
      // let a connection that went silent (a renumbered NAT) linger.
      connectionMonitor: { pingInterval: PING_INTERVAL_MS, pingTimeout: { maxTimeout: PING_TIMEOUT_MS } },
      // biome-ignore lint/suspicious/noExplicitAny: the service map is assembled conditionally.
      services: services as any,
    })) as unknown as Libp2p<Services>;
    return this;
  }

  get meshId(): string {
    return this.currentMeshId;
  }

  async start(): Promise<void> {
    if (this.started) return;
    if (this.stopping) throw new ConfigError('a stopped mesh node cannot be restarted; create a new one');
    await this.sequence.load();
    await this.membership.load();
    if (
      this.createdHere &&
      this.libp2p.services.meshBootstrap.all().length === 0 &&
      this.membership.owner === undefined
    ) {
      await this.membership.createOwner(this.endpointId, this.context.clock());
    }
    this.local.merge(this.membershipFields());
    try {
      await this.libp2p.start();
    } catch (err) {
      await Promise.resolve(this.libp2p.stop()).catch(() => undefined);
      throw new ConfigError(`cannot start the mesh listener: ${(err as Error).message}`, { cause: err });
    }
    this.started = true;
    // Joiners are not members yet: admission is served below the member check, rate-limited.
    await this.libp2p.handle(
      PROTOCOL_ADMIT,
      (stream, connection) => {
        const remote = endpointIdFromPeerId(connection.remotePeer);
        if (remote === undefined) stream.abort(new Error('peer identity is not Ed25519'));
        else void this.admission.serve(stream, remote);
      },
      { runOnLimitedConnection: true, maxInboundStreams: 4, maxOutboundStreams: 4 },
    );
    const onOpen = (evt: CustomEvent<Parameters<typeof coalesceTurnWrites>[0]>) => {
      coalesceTurnWrites(evt.detail);
      // Streams kept warm over a relayed connection would keep requests on the relay.
      const remote = endpointIdFromPeerId(evt.detail.remotePeer);
      if (!isRelayed(evt.detail) && remote !== undefined) this.warm.drop(remote);
    };
    const onSelfUpdate = () => this.scheduleReannounce();
    this.libp2p.addEventListener('connection:open', onOpen);
    this.libp2p.addEventListener('self:peer:update', onSelfUpdate);
    this.detachOpen = () => this.libp2p.removeEventListener('connection:open', onOpen);
    this.detachSelfUpdate = () => this.libp2p.removeEventListener('self:peer:update', onSelfUpdate);
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
    clearTimeout(this.reannounceTimer);
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
    clearTimeout(this.reannounceTimer);
    await this.shutdown();
  }

  private async shutdown(): Promise<void> {
    this.stopController.abort();
    this.warm.stop();
    await this.sequence.persist().catch((err: Error) => {
      this.log.warn({ err: err.message }, 'could not persist the announcement sequence');
    });
    this.detachOpen?.();
    this.detachSelfUpdate?.();
    this.detachRelayPolicy?.();
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
    const owner = this.membership.owner;
    if (owner === undefined) {
      if (options.expiresInMs !== undefined) {
        throw new ConfigError('this mesh has no owner key: its invites cannot expire');
      }
      return encodeInviteToken(this.currentMeshId, addrs);
    }
    const invite = encodeSigned(this.membership.invite(options.expiresInMs, this.context.clock()));
    if (invite === undefined) {
      throw new ConfigError('this node holds no invite for its mesh yet (not admitted by its owner)');
    }
    return encodeInviteToken(this.currentMeshId, addrs, {
      owner: Buffer.from(owner).toString('hex'),
      invite,
    });
  }

  /** The owner revokes a member: published to every node, enforced by each, kept across restarts. */
  async revoke(endpointId: EndpointId): Promise<void> {
    if (!isEndpointId(endpointId)) throw new ConfigError('PEER must be a 64-character hex endpoint id');
    if (endpointId === this.endpointId) throw new ConfigError('the owner node cannot revoke itself');
    await this.membership.revoke(endpointId, this.context.clock());
    await this.applyRevocation(endpointId);
    if (this.started) await this.libp2p.services.meshGossip.pushRevocations();
  }

  /** Membership facts for status pages and tests. */
  membershipStatus(): { owned: boolean; owner: boolean; admitted: boolean; revoked: number } {
    return {
      owned: this.membership.owner !== undefined,
      owner: this.membership.isOwner,
      admitted: this.membership.certificate !== undefined,
      revoked: this.membership.revocations().length,
    };
  }

  private isRevoked(peer: PeerId): boolean {
    const id = endpointIdFromPeerId(peer);
    return id !== undefined && this.membership.isRevoked(id);
  }

  private membershipFields(): LocalAnnouncementFields {
    return { membership: this.membership.certificate, meshOwnerNode: this.membership.isOwner };
  }

  private async applyRevocation(endpointId: EndpointId): Promise<void> {
    this.table.forget(endpointId);
    this.warm.drop(endpointId);
    this.log.info({ peer: short(endpointId) }, 'peer revoked by the mesh owner');
    if (this.started) await this.libp2p.hangUp(peerIdFromEndpointId(endpointId)).catch(() => undefined);
  }

  private async ingestRevocations(list: readonly OwnerSigned[]): Promise<void> {
    const fresh: EndpointId[] = [];
    for (const signed of list) {
      const id = this.membership.addRevocation(signed);
      if (id !== undefined) fresh.push(id);
    }
    if (fresh.length === 0) return;
    await this.membership.save().catch((err: Error) => {
      this.log.warn({ err: err.message }, 'could not persist revocations');
    });
    for (const id of fresh) await this.applyRevocation(id);
    // Passed on at once; the heartbeat's exchanges repair any miss.
    void this.libp2p.services.meshGossip.pushRevocations();
  }

  /** In a mesh with an owner, trades the token's invite for a certificate through `peer`. */
  private async admitVia(peer: PeerId): Promise<void> {
    const invite = this.pendingInvite;
    if (!this.membership.needsAdmission || invite === undefined) return;
    const stream = await this.libp2p.dialProtocol(peer, PROTOCOL_ADMIT, {
      signal: AbortSignal.any([AbortSignal.timeout(10_000), this.stopController.signal]),
      runOnLimitedConnection: true,
    });
    await this.admission.request(stream, invite);
    this.pendingInvite = undefined;
    this.log.info('admitted to the mesh by its owner');
    this.local.merge(this.membershipFields());
    await this.local.resign();
  }

  reachabilityProblem(): string | undefined {
    const service = this.libp2p.services.meshReachability;
    if (service === undefined) {
      return this.addresses().length === 0
        ? 'this node waits for a relay reservation (it has no address of its own)'
        : undefined;
    }
    const bridges = bridgeInterfaceIps();
    const classes = this.started ? this.libp2p.getMultiaddrs().map((ma) => classify(ma, bridges)) : [];
    return service.problem(classes, this.plan.port || undefined);
  }

  link(endpointId: EndpointId): PeerLink {
    const none: PeerLink = { kind: 'transitive', address: null, via: null };
    if (!this.started || !isEndpointId(endpointId)) return none;
    const connections = this.libp2p
      .getConnections(peerIdFromEndpointId(endpointId))
      .filter((c) => c.status === 'open');
    const connection = connections.find((c) => !isRelayed(c)) ?? connections[0];
    if (connection === undefined) return none;
    const address = connection.remoteAddr.toString();
    if (!isRelayed(connection)) return { kind: 'direct', address, via: null };
    const relay = relayOf(connection.remoteAddr);
    return {
      kind: 'relayed',
      address,
      via: relay === undefined ? null : (endpointIdFromPeerId(relay) ?? null),
    };
  }

  async join(token: string): Promise<void> {
    const invite = decodeInviteToken(token);
    const owner = invite.owner === undefined ? undefined : new Uint8Array(Buffer.from(invite.owner, 'hex'));
    // A token without an owner for our own mesh never downgrades it (certificates stay required).
    const ownerChanged =
      owner !== undefined &&
      (this.membership.owner === undefined || !Buffer.from(owner).equals(this.membership.owner));
    if (invite.mesh !== this.currentMeshId || ownerChanged) {
      // The mesh id is the members' secret: never logged.
      this.log.info('joining the mesh of the invite');
      this.currentMeshId = invite.mesh;
      this.table.reset();
      await this.membership.adopt(owner);
      this.local.merge(this.membershipFields());
      if (this.started) await this.local.resign();
    }
    if (this.membership.needsAdmission) this.pendingInvite = decodeSigned(invite.invite);
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
  connectionsTo(endpointId: EndpointId): Array<{ remoteAddr: string; limited: boolean; direction: string }> {
    if (!isEndpointId(endpointId)) return [];
    return this.libp2p.getConnections(peerIdFromEndpointId(endpointId)).map((c) => ({
      remoteAddr: c.remoteAddr.toString(),
      limited: c.limits !== undefined,
      direction: c.direction,
    }));
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
    const pooled = protocol === PROTOCOL_HTTP;
    // The combined signal is built only for a negotiation: a warm stream needs none.
    const opened =
      (pooled ? this.warm.take(endpointId) : undefined) ??
      (await this.libp2p.services.meshDialer.negotiate(
        endpointId,
        protocol,
        anySignal(options.signal, this.stopController.signal),
      ));
    if (pooled) opened.stream.addEventListener('close', () => this.warm.refill(endpointId), { once: true });
    return { ...this.wrap(opened.stream, protocol, endpointId), path: opened.path };
  }

  /** Pre-negotiated HTTP streams ready for `endpointId` (tests, diagnostics). */
  warmStreamCount(endpointId: EndpointId): number {
    return this.warm.size(endpointId);
  }

  async openForwardedStream(
    via: EndpointId,
    target: EndpointId,
    options: { signal?: AbortSignal } = {},
  ): Promise<ByteStream> {
    if (!isEndpointId(target)) throw new UpstreamError('invalid forward target', 'peer_unknown');
    const stream = await this.openStream(via, PROTOCOL_FORWARD, options);
    try {
      await stream.write(endpointIdToBytes(target));
    } catch (err) {
      stream.abort(err as Error);
      throw new UpstreamError(`forwarding through ${short(via)} failed`, 'upstream_failed', { cause: err });
    }
    return stream;
  }

  /**
   * Whether `target` ends an empty HTTP request forwarded by `via` quietly (as a host ends an
   * unused warm stream); false when `via` reset it; undefined when `via` could not be asked.
   */
  private async reaches(
    via: EndpointId,
    target: EndpointId,
    signal: AbortSignal,
  ): Promise<boolean | undefined> {
    const stream = await this.openForwardedStream(via, target, { signal }).catch(() => undefined);
    if (stream === undefined) return undefined;
    const onAbort = () => stream.abort(new Error('reachability check timed out'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await stream.closeWrite();
      for await (const _ of stream.source) {
        // A host never answers an empty request: whatever comes is drained.
      }
      return true;
    } catch {
      return signal.aborted ? undefined : false;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private wrap(stream: Stream, protocol: string, remote: EndpointId): ByteStream {
    const tap = this.options.streamTap;
    if (tap === undefined || protocol === PROTOCOL_GOSSIP) return toByteStream(stream);
    return toByteStream(stream, (direction, bytes) => {
      try {
        tap({ protocol, direction, remote, bytes });
      } catch {
        // A faulty observer must not break the stream.
      }
    });
  }

  private scheduleReannounce(): void {
    if (this.stopping || this.reannounceTimer !== undefined) return;
    this.reannounceTimer = setTimeout(() => {
      this.reannounceTimer = undefined;
      const current = this.local.announcement?.listenAddrs ?? [];
      const now = this.addresses();
      if (now.length === current.length && now.every((a, i) => a === current[i])) return;
      this.log.info({ addrs: now.length }, 'listen addresses changed');
      void this.updateAnnouncement({});
    }, 100);
    this.reannounceTimer.unref();
  }

  private isConnected(endpointId: EndpointId): boolean {
    if (!this.started) return false;
    return this.libp2p.getConnections(peerIdFromEndpointId(endpointId)).length > 0;
  }
}

/** Open both ways and never used: safe to carry a new request. */
function isFresh(stream: Stream): boolean {
  return (
    stream.status === 'open' &&
    stream.writeStatus === 'writable' &&
    stream.readStatus === 'readable' &&
    stream.remoteWriteStatus === 'writable' &&
    stream.remoteReadStatus === 'readable'
  );
}

/** The relay's peer id in a circuit address. */
function relayOf(address: Multiaddr): PeerId | undefined {
  const relay = circuitRelayId(address);
  if (relay === undefined) return undefined;
  try {
    return peerIdFromString(relay);
  } catch {
    return undefined;
  }
}
