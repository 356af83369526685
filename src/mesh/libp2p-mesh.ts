import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { circuitRelayTransport, RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2';
import { dcutr } from '@libp2p/dcutr';
import { type Identify, identify } from '@libp2p/identify';
import type { Connection, IdentifyResult, Libp2p, PeerId, PrivateKey, Stream } from '@libp2p/interface';
import { mdns } from '@libp2p/mdns';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Ping, ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { createLibp2p, type Libp2pInit } from 'libp2p';
import { ConfigError, UpstreamError } from '../errors.ts';
import type { Logger } from '../log.ts';
import {
  type PeerAnnouncement,
  PeerAnnouncementSchema,
  type SignedAnnouncement,
} from '../proto/gen/mesh_pb.js';
import { Admission, PROTOCOL_ADMIT } from './admission.ts';
import { signAnnouncement } from './announcements.ts';
import { pipeBoth, toByteStream } from './byte-stream.ts';
import { DialGuard } from './dial-guard.ts';
import {
  type GossipEntry,
  GossipError,
  newsFor,
  requestGossip,
  respondGossip,
  splitGossip,
} from './gossip.ts';
import {
  endpointIdFromBytes,
  endpointIdFromPeerId,
  endpointIdToBytes,
  identityFromPrivateKey,
  isEndpointId,
  type MeshIdentity,
  peerIdFromEndpointId,
} from './identity.ts';
import { decodeInviteToken, encodeInviteToken, isValidMeshId } from './invite.ts';
import { libp2pComponentLogger } from './libp2p-logger.ts';
import { MemberRelayPolicy, tableMembership } from './member-relay.ts';
import {
  checkMembershipProof,
  decodeSigned,
  encodeSigned,
  MeshMembership,
  membershipProof,
} from './membership.ts';
import { noiseCrypto } from './noise-crypto.ts';
import { PeerTable } from './peer-table.ts';
import { AnnouncementSequence } from './sequence.ts';
import { coalesceTurnWrites } from './turn-coalescing.ts';
import {
  type ByteStream,
  type EndpointId,
  type LocalAnnouncementFields,
  type MeshService,
  type PeerEvent,
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
  /** '127.0.0.1' (default) or '0.0.0.0'. */
  listenHost?: string;
  /** 0 (default) = any free port. */
  listenPort?: number;
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

type Services = { identify: Identify; ping: Ping };
type AppHandler = (stream: ByteStream, remote: EndpointId) => void | Promise<void>;

const STREAM_LIMIT = 1024;
const GOSSIP_TIMEOUT_MS = 10_000;
const DIAL_TIMEOUT_MS = 10_000;
const FORWARD_HEADER_TIMEOUT_MS = 30_000;
const LEAVE_TIMEOUT_MS = 2_000;
const PUSH_DEBOUNCE_MS = 20;
// Window ≤ half of libp2p's 4 MiB read buffer, so a paused reader is never reset.
const YAMUX_MAX_WINDOW = 2 * 1024 * 1024;
const WARM_STREAMS_DEFAULT = 8;
const WARM_STREAMS_REFILL_AT = 2;
const WARM_STREAM_IDLE_MS = 60_000;

interface OpenedStream {
  stream: Stream;
  path: 'direct' | 'relay';
}

export async function createLibp2pMesh(options: MeshOptions): Promise<Libp2pMesh> {
  const identity =
    options.identity ??
    (options.privateKey !== undefined ? identityFromPrivateKey(options.privateKey) : undefined);
  if (identity === undefined) throw new ConfigError('createLibp2pMesh needs a privateKey or identity');
  const meshId = options.meshId ?? randomBytes(16).toString('hex');
  if (!isValidMeshId(meshId)) throw new ConfigError('mesh id must be 1-128 characters of [A-Za-z0-9._:-]');
  const host = options.listenHost ?? '127.0.0.1';
  if (host !== '127.0.0.1' && host !== '0.0.0.0' && !/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) {
    throw new ConfigError(`listen host must be an IPv4 address, got ${host}`);
  }
  const port = options.listenPort ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`invalid mesh port ${port}`);

  const relayOnly = options.reachableOnlyViaRelay === true;
  const services: Record<string, unknown> = {
    identify: identify(),
    ping: ping({ runOnLimitedConnection: true }),
  };
  // A NATed node cannot be dialed directly, so hole punching must not "fix" the test setup.
  if (!relayOnly) services.dcutr = dcutr();
  // Members relay without limits; strangers get libp2p's defaults (member-relay.ts).
  const relayPolicy = options.relay === true ? new MemberRelayPolicy(options.relaySlots) : undefined;
  // Revoked members get no connection either way (docs/membership.md).
  const membership = new MeshMembership(options.dataDir);
  const revoked = (peer: PeerId) => {
    const id = endpointIdFromPeerId(peer);
    return id !== undefined && membership.isRevoked(id);
  };
  if (relayPolicy !== undefined) services.relay = relayPolicy.service(STREAM_LIMIT);
  // Every non-relay node also takes a reservation on a mesh relay when one is connected,
  // so a node behind a real NAT stays reachable; direct addresses are still dialed first.
  const listenAddrs = relayOnly ? ['/p2p-circuit'] : [`/ip4/${host}/tcp/${port}`];
  if (!relayOnly && options.relay !== true && options.relayReservation !== false)
    listenAddrs.push('/p2p-circuit');
  const libp2p = (await createLibp2p({
    privateKey: identity.privateKey,
    logger: libp2pComponentLogger(),
    start: false,
    addresses: { listen: listenAddrs },
    transports: [tcp(), circuitRelayTransport({ maxInboundStopStreams: STREAM_LIMIT })],
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: YAMUX_MAX_WINDOW } })],
    peerDiscovery: options.mdns === true ? [mdns({ serviceTag: 'mesh-llm.local' })] : [],
    connectionGater: {
      denyInboundRelayReservation: relayPolicy && ((peer) => relayPolicy.holdReservation(peer)),
      denyDialPeer: revoked,
      denyInboundEncryptedConnection: revoked,
      denyOutboundEncryptedConnection: revoked,
    },
    metrics: options.metrics,
    // biome-ignore lint/suspicious/noExplicitAny: the service map is assembled conditionally.
    services: services as any,
  })) as unknown as Libp2p<Services>;
  return new Libp2pMesh(options, identity, meshId, libp2p, relayPolicy, membership);
}

/** The MeshService over js-libp2p. Extra methods are for status pages and tests. */
export class Libp2pMesh implements MeshService {
  readonly endpointId: EndpointId;
  readonly peerId: string;
  private currentMeshId: string;
  private readonly options: MeshOptions;
  private readonly identity: MeshIdentity;
  private readonly libp2p: Libp2p<Services>;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly heartbeatMs: number;
  private readonly table: PeerTable;
  private readonly sequence: AnnouncementSequence;
  private readonly handlers = new Map<string, AppHandler>();
  private readonly registered = new Set<string>();
  private localFields: LocalAnnouncementFields;
  private selfSigned: SignedAnnouncement | undefined;
  private selfAnnouncement: PeerAnnouncement | undefined;
  private leaving = false;
  private started = false;
  private stopping = false;
  private readonly stopController = new AbortController();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private pushTimer: NodeJS.Timeout | undefined;
  private reannounceTimer: NodeJS.Timeout | undefined;
  private resignChain: Promise<void> = Promise.resolve();
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly rerun = new Map<string, Promise<void>>();
  /** Origins whose announcement changed (or left) since the last push. */
  private readonly news = new Set<EndpointId>();
  private readonly gossipCapable = new Set<string>();
  private readonly relayPeers = new Set<string>();
  /** Peer id string → multiaddrs from invite tokens: redialed whenever they drop. */
  private readonly bootstraps = new Map<string, Multiaddr[]>();
  private readonly redials = new Map<string, NodeJS.Timeout>();
  private readonly detachers: Array<() => void> = [];
  private readonly warm: WarmStreamPool<OpenedStream>;
  private readonly dialGuard: DialGuard;
  private readonly relayPolicy: MemberRelayPolicy | undefined;
  private readonly membership: MeshMembership;
  private readonly createdHere: boolean;
  private readonly admission: Admission;
  /** The invite of the token joined with, until the owner has admitted this node. */
  private pendingInvite: ReturnType<typeof decodeSigned>;

  constructor(
    options: MeshOptions,
    identity: MeshIdentity,
    meshId: string,
    libp2p: Libp2p<Services>,
    relayPolicy?: MemberRelayPolicy,
    membership: MeshMembership = new MeshMembership(options.dataDir),
  ) {
    this.relayPolicy = relayPolicy;
    this.membership = membership;
    this.createdHere = options.meshId === undefined;
    this.options = options;
    this.identity = identity;
    this.endpointId = identity.endpointId;
    this.peerId = identity.peerId.toString();
    this.currentMeshId = meshId;
    this.libp2p = libp2p;
    this.log = options.logger;
    this.clock = options.clock ?? Date.now;
    this.heartbeatMs = options.heartbeatMs ?? 60_000;
    this.localFields = { ...(options.announcement ?? {}) };
    this.dialGuard = new DialGuard(this.clock);
    this.sequence = new AnnouncementSequence({ dataDir: options.dataDir, clock: this.clock });
    this.table = new PeerTable({
      selfEndpointId: this.endpointId,
      meshId: () => this.currentMeshId,
      clock: this.clock,
      isConnected: (id) => this.isConnected(id),
      leaveRelayMs: this.heartbeatMs * 3,
      admit: (id, announcement) => this.membership.check(id, announcement.membership),
    });
    this.admission = new Admission({
      membership: this.membership,
      self: this.endpointId,
      clock: this.clock,
      isMember: (id) => this.table.get(id) !== undefined,
      ownerNode: () => this.table.list().find((r) => r.announcement.meshOwnerNode)?.endpointId,
      openStream: (id, protocol, signal) => this.openStream(id, protocol, { signal }),
    });
    this.warm = new WarmStreamPool<OpenedStream>({
      size: options.warmStreams ?? WARM_STREAMS_DEFAULT,
      refillAt: Math.min(WARM_STREAMS_REFILL_AT, (options.warmStreams ?? WARM_STREAMS_DEFAULT) - 1),
      idleMs: WARM_STREAM_IDLE_MS,
      open: (endpointId) => this.negotiate(endpointId, PROTOCOL_HTTP, this.stopController.signal),
      usable: ({ stream }) => isFresh(stream),
      // A plain close reaches the host as an empty request, which it ends quietly.
      discard: ({ stream }) => void stream.close().catch(() => stream.abort(new Error('discarded'))),
      onOpenError: (endpointId, err) =>
        this.log.debug({ peer: short(endpointId), err: (err as Error).message }, 'warm stream open failed'),
    });
  }

  get meshId(): string {
    return this.currentMeshId;
  }

  async start(): Promise<void> {
    if (this.started) return;
    if (this.stopping) throw new ConfigError('a stopped mesh node cannot be restarted; create a new one');
    await this.sequence.load();
    await this.membership.load();
    // A node that creates a mesh holds its owner key (meshes from before have none).
    if (this.createdHere && this.bootstraps.size === 0 && this.membership.owner === undefined) {
      await this.membership.createOwner(this.endpointId, this.clock());
    }
    try {
      await this.libp2p.start();
    } catch (err) {
      await Promise.resolve(this.libp2p.stop()).catch(() => undefined);
      throw new ConfigError(`cannot start the mesh listener: ${(err as Error).message}`, { cause: err });
    }
    this.started = true;
    this.listen('connection:open', (evt) => coalesceTurnWrites(evt.detail));
    this.listen('peer:connect', (evt) => this.onPeerConnect(evt.detail));
    this.listen('peer:disconnect', (evt) => this.onPeerDisconnect(evt.detail));
    this.listen('peer:identify', (evt) => this.onIdentify(evt.detail));
    this.listen('self:peer:update', () => this.scheduleReannounce());
    if (this.relayPolicy !== undefined) {
      this.detachers.push(this.relayPolicy.attach(tableMembership(this.table, this.stopController.signal)));
    }
    if (this.options.mdns === true) {
      this.listen('peer:discovery', (evt) => {
        const id = evt.detail.id;
        if (this.libp2p.getConnections(id).length > 0 || this.stopping) return;
        this.libp2p.dial(id, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }).catch((err: Error) => {
          this.log.debug({ peer: id.toString(), err: err.message }, 'mdns dial failed');
        });
      });
    }
    await this.libp2p.handle(
      PROTOCOL_GOSSIP,
      (stream, connection) => {
        void this.onGossipStream(stream, connection);
      },
      { runOnLimitedConnection: true, maxInboundStreams: 64, maxOutboundStreams: 64 },
    );
    // Joiners are not members yet: admission is served below the member check, rate-limited.
    await this.libp2p.handle(
      PROTOCOL_ADMIT,
      (stream, connection) => {
        const remote = endpointIdFromPeerId(connection.remotePeer);
        if (remote === undefined) stream.abort(new Error('peer identity is not Ed25519'));
        else void this.admission.serve(toByteStream(stream), remote);
      },
      { runOnLimitedConnection: true, maxInboundStreams: 4, maxOutboundStreams: 4 },
    );
    await this.registerApp(PROTOCOL_FORWARD);
    for (const protocol of this.handlers.keys()) await this.registerApp(protocol);
    await this.resign();
    this.heartbeatTimer = setInterval(() => void this.tick(), this.heartbeatMs);
    this.heartbeatTimer.unref();
    this.log.info(
      { endpointId: this.endpointId, peerId: this.peerId, addrs: this.addresses().length },
      'mesh node started',
    );
    const boots = [...this.bootstraps.keys()];
    if (boots.length > 0) await this.connectBootstraps(boots);
  }

  async stop(): Promise<void> {
    if (!this.started || this.stopping) return;
    this.stopping = true;
    this.clearTimers();
    try {
      // Say goodbye: a final announcement with leaving=true reaches every neighbour.
      this.leaving = true;
      await this.resign();
      const peers = this.gossipPeers();
      await raceTimeout(Promise.allSettled(peers.map((p) => this.exchange(p))), LEAVE_TIMEOUT_MS);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'leave announcement failed');
    }
    await this.shutdown();
  }

  /** Stops without announcing the leave, as a crash would (tests, fatal errors). */
  async abort(): Promise<void> {
    if (!this.started || this.stopping) return;
    this.stopping = true;
    this.clearTimers();
    await this.shutdown();
  }

  private async shutdown(): Promise<void> {
    this.stopController.abort();
    this.warm.stop();
    await this.sequence.persist().catch((err: Error) => {
      this.log.warn({ err: err.message }, 'could not persist the announcement sequence');
    });
    for (const detach of this.detachers.splice(0)) detach();
    await this.libp2p.stop();
    this.started = false;
    this.log.info({ endpointId: this.endpointId }, 'mesh node stopped');
  }

  private clearTimers(): void {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.pushTimer);
    clearTimeout(this.reannounceTimer);
    for (const timer of this.redials.values()) clearTimeout(timer);
    this.redials.clear();
  }

  private listen<
    K extends
      | 'connection:open'
      | 'peer:connect'
      | 'peer:disconnect'
      | 'peer:identify'
      | 'self:peer:update'
      | 'peer:discovery',
  >(
    type: K,
    // biome-ignore lint/suspicious/noExplicitAny: libp2p's typed event map varies per event.
    handler: (evt: any) => void,
  ): void {
    const wrapped = (evt: unknown) => {
      try {
        handler(evt);
      } catch (err) {
        this.log.warn({ event: type, err: (err as Error).message }, 'mesh event handler failed');
      }
    };
    this.libp2p.addEventListener(type, wrapped);
    this.detachers.push(() => this.libp2p.removeEventListener(type, wrapped));
  }

  addresses(): string[] {
    if (!this.started) return [];
    return this.libp2p.getMultiaddrs().map((ma) => ma.toString());
  }

  inviteToken(options: { expiresInMs?: number } = {}): string {
    const addrs = this.addresses();
    if (addrs.length === 0) {
      throw new ConfigError('this node has no dialable address yet (still waiting for a relay reservation?)');
    }
    const owner = this.membership.owner;
    if (owner === undefined) {
      if (options.expiresInMs !== undefined)
        throw new ConfigError('this mesh has no owner key: its invites cannot expire');
      return encodeInviteToken(this.currentMeshId, addrs);
    }
    const invite = encodeSigned(this.membership.invite(options.expiresInMs, this.clock()));
    if (invite === undefined)
      throw new ConfigError('this node holds no invite for its mesh yet (not admitted by its owner)');
    return encodeInviteToken(this.currentMeshId, addrs, {
      owner: Buffer.from(owner).toString('hex'),
      invite,
    });
  }

  /** The owner revokes a member: published to every node, enforced by each, kept across restarts. */
  async revoke(endpointId: EndpointId): Promise<void> {
    if (!isEndpointId(endpointId)) throw new ConfigError('PEER must be a 64-character hex endpoint id');
    if (endpointId === this.endpointId) throw new ConfigError('the owner node cannot revoke itself');
    await this.membership.revoke(endpointId, this.clock());
    await this.applyRevocation(endpointId);
    await Promise.allSettled(this.gossipPeers().map((p) => this.exchange(p, [])));
  }

  /** Membership facts for status pages. */
  membershipStatus(): { owned: boolean; owner: boolean; admitted: boolean; revoked: number } {
    return {
      owned: this.membership.owner !== undefined,
      owner: this.membership.isOwner,
      admitted: this.membership.certificate !== undefined,
      revoked: this.membership.revocations().length,
    };
  }

  private async applyRevocation(endpointId: EndpointId): Promise<void> {
    this.table.forget(endpointId);
    this.warm.drop(endpointId);
    this.log.info({ peer: short(endpointId) }, 'peer revoked by the mesh owner');
    await this.libp2p.hangUp(peerIdFromEndpointId(endpointId)).catch(() => undefined);
  }

  private async ingestRevocations(
    list: readonly Parameters<MeshMembership['addRevocation']>[0][],
  ): Promise<void> {
    const fresh = list
      .map((signed) => this.membership.addRevocation(signed))
      .filter((id) => id !== undefined);
    if (fresh.length === 0) return;
    await this.membership
      .save()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'could not persist revocations'));
    for (const id of fresh) await this.applyRevocation(id);
    // An empty push still carries the revocations.
    this.schedulePush();
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
      if (this.started) await this.resign();
    }
    if (this.membership.needsAdmission) this.pendingInvite = decodeSigned(invite.invite);
    const peers: string[] = [];
    for (const addr of invite.addrs) {
      const ma = multiaddr(addr);
      const peer = ma.getComponents().at(-1)?.value;
      if (peer === undefined || peer === this.peerId) continue;
      const list = this.bootstraps.get(peer) ?? [];
      if (!list.some((m) => m.equals(ma))) list.push(ma);
      this.bootstraps.set(peer, list);
      if (!peers.includes(peer)) peers.push(peer);
    }
    if (this.started && peers.length > 0) await this.connectBootstraps(peers);
  }

  private async connectBootstraps(peers: string[]): Promise<void> {
    const results = await Promise.allSettled(peers.map((p) => this.connectBootstrap(p)));
    if (!results.some((r) => r.status === 'fulfilled')) {
      // The mesh refused the invite (expired, revoked): retrying cannot help; say why.
      const refusal = results.find((r) => r.status === 'rejected' && r.reason instanceof ConfigError);
      if (refusal !== undefined) throw (refusal as PromiseRejectedResult).reason;
      this.log.warn(
        { peers: peers.length },
        'could not reach any invite address yet; retrying in the background',
      );
      for (const peer of peers) this.scheduleRedial(peer);
    }
  }

  private async connectBootstrap(peer: string): Promise<void> {
    const addrs = this.bootstraps.get(peer);
    if (addrs === undefined) return;
    const connection = await this.libp2p.dial(addrs, { signal: this.timeoutSignal(DIAL_TIMEOUT_MS) });
    await this.admitVia(connection.remotePeer);
    await this.exchange(connection.remotePeer);
  }

  /** In a mesh with an owner, trades the token's invite for a certificate through `peer`. */
  private async admitVia(peer: PeerId): Promise<void> {
    const invite = this.pendingInvite;
    if (!this.membership.needsAdmission || invite === undefined) return;
    const stream = await this.libp2p.dialProtocol(peer, PROTOCOL_ADMIT, {
      signal: this.timeoutSignal(GOSSIP_TIMEOUT_MS),
      runOnLimitedConnection: true,
    });
    await this.admission.request(toByteStream(stream), invite);
    this.pendingInvite = undefined;
    this.log.info('admitted to the mesh by its owner');
    await this.resign();
  }

  peers(): PeerRecord[] {
    return this.table.list();
  }

  peer(endpointId: EndpointId): PeerRecord | undefined {
    return this.table.get(endpointId);
  }

  onPeerEvent(listener: (event: PeerEvent) => void): () => void {
    return this.table.onEvent(listener);
  }

  async updateAnnouncement(fields: LocalAnnouncementFields): Promise<void> {
    this.localFields = { ...this.localFields, ...fields };
    if (!this.started || this.stopping) return;
    await this.resign();
    const own = this.ownSet();
    await Promise.allSettled(this.gossipPeers().map((p) => this.exchange(p, own)));
  }

  /** The latest signed local announcement (for status and tests). */
  localAnnouncement(): PeerAnnouncement | undefined {
    return this.selfAnnouncement;
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
    if (protocol === PROTOCOL_GOSSIP || protocol === PROTOCOL_FORWARD) {
      throw new ConfigError(`${protocol} is handled by the mesh itself`);
    }
    this.handlers.set(protocol, handler);
    if (this.started && !this.registered.has(protocol)) {
      this.registerApp(protocol).catch((err: Error) => {
        this.log.error({ protocol, err: err.message }, 'could not register protocol handler');
      });
    }
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
      (await this.negotiate(endpointId, protocol, anySignal(options.signal, this.stopController.signal)));
    if (pooled) opened.stream.addEventListener('close', () => this.warm.refill(endpointId), { once: true });
    return { ...this.wrap(opened.stream, protocol, endpointId), path: opened.path };
  }

  /** Pre-negotiated HTTP streams ready for `endpointId` (tests, diagnostics). */
  warmStreamCount(endpointId: EndpointId): number {
    return this.warm.size(endpointId);
  }

  /** A new outbound stream: over the existing or a fresh connection, else through a relay. */
  private async negotiate(
    endpointId: EndpointId,
    protocol: string,
    signal: AbortSignal,
  ): Promise<OpenedStream> {
    const peerId = peerIdFromEndpointId(endpointId);
    const record = this.table.get(endpointId);
    const connected = this.libp2p.getConnections(peerId).length > 0;
    if (record === undefined && !connected) {
      throw new UpstreamError(`peer ${short(endpointId)} is not known in this mesh`, 'peer_unknown');
    }
    const streamOptions = { signal, runOnLimitedConnection: true, maxOutboundStreams: STREAM_LIMIT };
    try {
      // Not connected: only the announced addresses still within their dial budgets.
      const target = connected
        ? peerId
        : this.dialGuard.admit(endpointId, peerId.toString(), record!.announcement.listenAddrs);
      if (Array.isArray(target) && target.length === 0)
        throw new UpstreamError('dial budget spent', 'dial_limited');
      const connection = await this.libp2p.dial(target, { signal });
      const stream = await connection.newStream(protocol, streamOptions);
      return { stream, path: isRelayed(connection) ? 'relay' : 'direct' };
    } catch (err) {
      if (signal.aborted) throw new UpstreamError('stream open aborted', 'aborted', { cause: err });
      // Its own addresses failed: try a circuit through each relay we are connected to.
      const viaRelay = await this.dialViaRelays(peerId, protocol, streamOptions);
      if (viaRelay === undefined) {
        throw new UpstreamError(`cannot reach peer ${short(endpointId)}`, 'peer_unreachable', { cause: err });
      }
      return { stream: viaRelay, path: 'relay' };
    }
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

  // ---- streams -------------------------------------------------------------------

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

  private async dialViaRelays(
    peerId: PeerId,
    protocol: string,
    streamOptions: { signal: AbortSignal; runOnLimitedConnection: boolean; maxOutboundStreams: number },
  ): Promise<Stream | undefined> {
    for (const relay of this.relayPeers) {
      if (relay === peerId.toString() || streamOptions.signal.aborted) continue;
      try {
        const circuit = multiaddr(`/p2p/${relay}/p2p-circuit/p2p/${peerId.toString()}`);
        return await this.libp2p.dialProtocol(circuit, protocol, streamOptions);
      } catch (err) {
        this.log.debug({ relay, err: (err as Error).message }, 'relay circuit dial failed');
      }
    }
    return undefined;
  }

  /** Puts a peer's announced addresses (signed by it) into the peer store for dialing. */
  private async rememberAddrs(peerId: PeerId, record: PeerRecord): Promise<void> {
    const target = peerId.toString();
    const addrs: Multiaddr[] = [];
    for (const text of record.announcement.listenAddrs) {
      try {
        const ma = multiaddr(text);
        const last = ma.getComponents().at(-1);
        if (last?.name !== 'p2p' || last.value !== target) continue;
        addrs.push(ma.decapsulateCode(last.code));
      } catch {
        // An unparsable address is skipped; the rest may work.
      }
    }
    if (addrs.length === 0) return;
    try {
      await this.libp2p.peerStore.merge(peerId, { multiaddrs: addrs });
    } catch (err) {
      this.log.debug({ peer: target, err: (err as Error).message }, 'peer store merge failed');
    }
  }

  private async registerApp(protocol: string): Promise<void> {
    this.registered.add(protocol);
    await this.libp2p.handle(
      protocol,
      (stream, connection) => {
        void this.onAppStream(protocol, stream, connection);
      },
      {
        runOnLimitedConnection: true,
        maxInboundStreams: STREAM_LIMIT,
        maxOutboundStreams: STREAM_LIMIT,
        force: true,
      },
    );
  }

  private async onAppStream(protocol: string, stream: Stream, connection: Connection): Promise<void> {
    const remote = endpointIdFromPeerId(connection.remotePeer);
    if (remote === undefined) {
      stream.abort(new Error('peer identity is not Ed25519'));
      return;
    }
    const bytes = this.wrap(stream, protocol, remote);
    try {
      // Only members of this mesh (a verified announcement with our mesh id) are served.
      if (!(await this.awaitMember(remote))) {
        this.log.info({ protocol, remote: short(remote) }, 'refused stream from a non-member');
        bytes.abort(new Error('not a member of this mesh'));
        return;
      }
      if (protocol === PROTOCOL_FORWARD) {
        await this.onForward(bytes, remote);
        return;
      }
      const handler = this.handlers.get(protocol);
      if (handler === undefined) {
        bytes.abort(new Error('protocol not handled'));
        return;
      }
      await handler(bytes, remote);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.log.warn(
        { protocol, remote: short(remote), err: error.name, msg: error.message },
        'stream handler failed',
      );
      bytes.abort(error);
    }
  }

  /** Middle node of a forward: read the 32-byte target, then only pipe bytes. */
  private async onForward(inbound: ByteStream, remote: EndpointId): Promise<void> {
    const iterator = inbound.source[Symbol.asyncIterator]();
    let head: Uint8Array = new Uint8Array(0);
    const timer = setTimeout(
      () => inbound.abort(new Error('forward header timeout')),
      FORWARD_HEADER_TIMEOUT_MS,
    );
    try {
      while (head.byteLength < 32) {
        const next = await iterator.next();
        if (next.done === true) throw new Error('forward stream ended before the target id');
        head = concatBytes(head, next.value);
      }
    } finally {
      clearTimeout(timer);
    }
    const target = endpointIdFromBytes(head.subarray(0, 32));
    if (target === this.endpointId || target === remote || this.table.get(target) === undefined) {
      this.log.info({ from: short(remote), target: short(target) }, 'refused forward to an unknown target');
      inbound.abort(new Error('unknown forward target'));
      return;
    }
    const outbound = await this.openStream(target, PROTOCOL_HTTP, { signal: this.stopController.signal });
    const rest = head.subarray(32);
    if (rest.byteLength > 0) await outbound.write(rest);
    const remainder: ByteStream = {
      source: { [Symbol.asyncIterator]: () => iterator },
      write: (chunk) => inbound.write(chunk),
      closeWrite: () => inbound.closeWrite(),
      abort: (error) => inbound.abort(error),
    };
    this.log.debug({ from: short(remote), target: short(target) }, 'forwarding stream');
    await pipeBoth(remainder, outbound);
  }

  private awaitMember(endpointId: EndpointId): Promise<boolean> {
    return this.table.whenKnown(endpointId, this.options.memberWaitMs ?? 5_000, this.stopController.signal);
  }

  // ---- gossip --------------------------------------------------------------------

  private async onGossipStream(stream: Stream, connection: Connection): Promise<void> {
    const remote = endpointIdFromPeerId(connection.remotePeer);
    if (remote === undefined) {
      stream.abort(new Error('peer identity is not Ed25519'));
      return;
    }
    const bytes = toByteStream(stream);
    try {
      await raceTimeout(
        respondGossip(bytes, async (theirs) => {
          if (this.table.get(remote) !== undefined) await this.ingestRevocations(theirs.revocations ?? []);
          await this.ingestAll(theirs.announcements, remote);
          // Only a member (its own announcement, with our mesh id, accepted) learns anything,
          // and only what it does not hold yet; a peer that proved it knows the mesh id (mDNS)
          // gets our own announcement, so it can send its own.
          if (this.table.get(remote) !== undefined) {
            return {
              announcements: newsFor(this.fullEntries(), theirs.known),
              revocations: this.membership.revocations(),
            };
          }
          const proven =
            theirs.proof !== undefined &&
            checkMembershipProof(
              this.currentMeshId,
              endpointIdToBytes(remote),
              endpointIdToBytes(this.endpointId),
              theirs.proof,
            );
          return { announcements: proven ? this.ownSet() : [] };
        }),
        GOSSIP_TIMEOUT_MS,
      );
    } catch (err) {
      this.logGossipFailure(remote, err);
      bytes.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /**
   * One exchange with a connected peer: our full set (anti-entropy), or only `push` (news to
   * spread). Overlapping calls coalesce into one full rerun.
   */
  private exchange(peerId: PeerId, push?: SignedAnnouncement[]): Promise<void> {
    const key = peerId.toString();
    const running = this.inflight.get(key);
    if (running !== undefined) {
      // Run once more after the current one so newer local state is delivered too.
      let rerun = this.rerun.get(key);
      if (rerun === undefined) {
        rerun = running.then(() => {
          this.rerun.delete(key);
          return this.exchange(peerId);
        });
        this.rerun.set(key, rerun);
      }
      return rerun;
    }
    const run = this.runExchange(peerId, push).finally(() => {
      if (this.inflight.get(key) === run) this.inflight.delete(key);
    });
    this.inflight.set(key, run);
    return run;
  }

  private async runExchange(peerId: PeerId, push?: SignedAnnouncement[]): Promise<void> {
    const remote = endpointIdFromPeerId(peerId);
    if (remote === undefined || this.libp2p.getConnections(peerId).length === 0) return;
    let bytes: ByteStream | undefined;
    try {
      const signal = this.timeoutSignal(GOSSIP_TIMEOUT_MS);
      const stream = await this.libp2p.dialProtocol(peerId, PROTOCOL_GOSSIP, {
        signal,
        runOnLimitedConnection: true,
      });
      bytes = toByteStream(stream);
      const member = this.table.get(remote) !== undefined;
      // A peer not known as a member learns nothing secret: our announcement (it carries the
      // mesh id) goes only to an invite's address; anyone else (mDNS) gets a proof instead.
      const invited = this.bootstraps.has(peerId.toString());
      const ours = member ? (push ?? this.fullSet()) : invited ? this.ownSet() : [];
      const extras = member
        ? { revocations: this.membership.revocations() }
        : invited
          ? {}
          : {
              proof: membershipProof(
                this.currentMeshId,
                endpointIdToBytes(this.endpointId),
                endpointIdToBytes(remote),
              ),
            };
      // More than one message holds goes in several exchanges, one stream each.
      const [first, ...rest] = splitGossip(ours);
      // What we hold goes along, so the reply carries only what is new to us.
      const theirs = await raceTimeout(
        requestGossip(bytes, first!, this.knownDigests(), extras),
        GOSSIP_TIMEOUT_MS,
      );
      if (member) await this.ingestRevocations(theirs.revocations ?? []);
      await this.ingestAll(theirs.announcements, remote);
      for (const batch of rest) {
        bytes = toByteStream(
          await this.libp2p.dialProtocol(peerId, PROTOCOL_GOSSIP, { signal, runOnLimitedConnection: true }),
        );
        await this.ingestAll(
          (await raceTimeout(requestGossip(bytes, batch, this.knownDigests()), GOSSIP_TIMEOUT_MS))
            .announcements,
          remote,
        );
      }
    } catch (err) {
      bytes?.abort(err instanceof Error ? err : new Error(String(err)));
      if (!this.stopping) this.logGossipFailure(remote, err);
    }
  }

  private logGossipFailure(remote: EndpointId, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    const malformed = error instanceof GossipError || error.name === 'FrameError';
    // Peer id and reason only: gossip content is never logged.
    this.log[malformed ? 'warn' : 'debug'](
      { peer: short(remote), reason: error.message },
      'gossip exchange failed',
    );
  }

  /** Our own signed announcement with its seq, once signed. */
  private ownEntries(): GossipEntry[] {
    if (this.selfSigned === undefined || this.selfAnnouncement === undefined) return [];
    return [
      { endpointId: this.endpointId, seq: this.selfAnnouncement.announcementSeq, signed: this.selfSigned },
    ];
  }

  private ownSet(): SignedAnnouncement[] {
    return this.ownEntries().map((e) => e.signed);
  }

  private fullSet(): SignedAnnouncement[] {
    return this.fullEntries().map((e) => e.signed);
  }

  private fullEntries(): GossipEntry[] {
    return [...this.ownEntries(), ...this.table.relayEntries()];
  }

  /** Origin → newest seq we hold, ourselves included. */
  private knownDigests(): Map<EndpointId, bigint> {
    const known = this.table.knownDigests();
    for (const own of this.ownEntries()) known.set(own.endpointId, own.seq);
    return known;
  }

  private async ingestAll(list: SignedAnnouncement[], from: EndpointId): Promise<void> {
    let urgent = false;
    let deferred = 0;
    for (const signed of list) {
      const result = await this.table.ingest(signed, from);
      if (result.status === 'accepted') {
        if (result.changed) {
          urgent = true;
          this.news.add(result.record.endpointId);
        }
        if (result.isNew) {
          this.log.info(
            { peer: short(result.record.endpointId), via: short(from), transitive: result.record.transitive },
            'peer joined',
          );
        }
      } else if (result.status === 'left') {
        urgent = true;
        this.news.add(result.endpointId);
        this.log.info({ peer: short(result.endpointId) }, 'peer left');
      } else if (result.reason === 'rate_limited' || result.reason === 'table_full') {
        deferred++;
      } else if (result.reason !== 'stale_seq' && result.reason !== 'self') {
        this.log.warn(
          {
            from: short(from),
            origin: result.endpointId ? short(result.endpointId) : undefined,
            reason: result.reason,
          },
          'announcement rejected',
        );
      }
    }
    if (deferred > 0) this.log.debug({ from: short(from), deferred }, 'new origins deferred (gossip bounds)');
    // New peers, leaves and content changes spread at once; plain refreshes wait a heartbeat.
    if (urgent) this.schedulePush();
  }

  private schedulePush(): void {
    if (this.pushTimer !== undefined || this.stopping) return;
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined;
      if (this.stopping) return;
      // Only the announcements that changed: the heartbeat's full exchange repairs any miss.
      const push = this.table.relayEntries(this.news).map((e) => e.signed);
      this.news.clear();
      for (const peer of this.gossipPeers()) void this.exchange(peer, push);
    }, PUSH_DEBOUNCE_MS);
    this.pushTimer.unref();
  }

  /**
   * Peers to gossip with: connected members, plus gossip-capable peers we dialed
   * ourselves (invite, mDNS). A stranger that dials us must reveal a same-mesh
   * announcement first; it is not sent ours unasked.
   */
  private gossipPeers(): PeerId[] {
    return this.libp2p.getPeers().filter((peer) => this.shouldGossipWith(peer));
  }

  private shouldGossipWith(peer: PeerId): boolean {
    const id = endpointIdFromPeerId(peer);
    if (id !== undefined && this.table.get(id) !== undefined) return true;
    if (!this.gossipCapable.has(peer.toString())) return false;
    return this.libp2p.getConnections(peer).some((c) => c.direction === 'outbound');
  }

  private async tick(): Promise<void> {
    if (this.stopping) return;
    try {
      await this.resign();
      const removed = this.table.sweep(this.heartbeatMs * 2.5);
      for (const id of removed) this.log.info({ peer: short(id) }, 'peer silent, removed');
      const peers = this.gossipPeers();
      await Promise.allSettled(peers.flatMap((p) => [this.exchange(p), this.measureRtt(p)]));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'heartbeat failed');
    }
  }

  private async measureRtt(peerId: PeerId): Promise<void> {
    const id = endpointIdFromPeerId(peerId);
    if (id === undefined || this.table.get(id) === undefined) return;
    try {
      const rtt = await this.libp2p.services.ping.ping(peerId, {
        signal: this.timeoutSignal(Math.min(this.heartbeatMs, 5_000)),
        runOnLimitedConnection: true,
      });
      this.table.setRtt(id, rtt);
    } catch (err) {
      this.log.debug({ peer: short(id), err: (err as Error).message }, 'ping failed');
    }
  }

  /** Re-signs the local announcement with the next sequence number (serialised). */
  private resign(): Promise<void> {
    const run = this.resignChain.then(async () => {
      const fields = this.localFields;
      const announcement = create(PeerAnnouncementSchema, {
        ...fields,
        version: fields.version || this.options.version,
        endpointId: endpointIdToBytes(this.endpointId),
        meshId: this.currentMeshId,
        membership: this.membership.certificate,
        meshOwnerNode: this.membership.isOwner,
        listenAddrs: this.addresses(),
        issuedAtMs: BigInt(Math.floor(this.clock())),
        announcementSeq: this.sequence.next(),
        leaving: this.leaving,
      });
      this.selfSigned = await signAnnouncement(this.identity.privateKey, announcement);
      this.selfAnnouncement = announcement;
    });
    this.resignChain = run.catch(() => undefined);
    return run;
  }

  private scheduleReannounce(): void {
    if (this.stopping || this.reannounceTimer !== undefined) return;
    this.reannounceTimer = setTimeout(() => {
      this.reannounceTimer = undefined;
      const current = this.selfAnnouncement?.listenAddrs ?? [];
      const now = this.addresses();
      if (now.length === current.length && now.every((a, i) => a === current[i])) return;
      this.log.info({ addrs: now.length }, 'listen addresses changed');
      void this.updateAnnouncement({});
    }, 100);
    this.reannounceTimer.unref();
  }

  // ---- connections ---------------------------------------------------------------

  private isConnected(endpointId: EndpointId): boolean {
    if (!this.started) return false;
    return this.libp2p.getConnections(peerIdFromEndpointId(endpointId)).length > 0;
  }

  private onPeerConnect(peerId: PeerId): void {
    const id = endpointIdFromPeerId(peerId);
    const timer = this.redials.get(peerId.toString());
    if (timer !== undefined) {
      clearTimeout(timer);
      this.redials.delete(peerId.toString());
    }
    if (id !== undefined) this.table.setConnected(id, true);
  }

  private onPeerDisconnect(peerId: PeerId): void {
    const key = peerId.toString();
    this.gossipCapable.delete(key);
    this.relayPeers.delete(key);
    const id = endpointIdFromPeerId(peerId);
    if (id !== undefined) {
      this.table.setConnected(id, false);
      this.warm.drop(id);
    }
    if (!this.stopping) this.scheduleRedial(key);
  }

  private onIdentify(result: IdentifyResult): void {
    const key = result.peerId.toString();
    if (result.protocols.includes(RELAY_V2_HOP_CODEC)) this.relayPeers.add(key);
    if (!result.protocols.includes(PROTOCOL_GOSSIP)) return;
    this.gossipCapable.add(key);
    if (this.shouldGossipWith(result.peerId)) void this.exchange(result.peerId);
  }

  /**
   * Redials a dropped bootstrap peer (always) or known member (while it is still in the
   * table) with capped exponential backoff. A NATed node only redials its bootstraps.
   */
  private scheduleRedial(peer: string, attempt = 0): void {
    if (this.stopping || (attempt === 0 && this.redials.has(peer))) return;
    const base = Math.min(1_000, this.heartbeatMs);
    const cap = Math.max(base, Math.min(30_000, this.heartbeatMs * 10));
    const delay = Math.min(cap, base * 2 ** attempt) * (0.75 + Math.random() * 0.5);
    const timer = setTimeout(() => void this.redial(peer, attempt), delay);
    timer.unref();
    this.redials.set(peer, timer);
  }

  private async redial(peer: string, attempt: number): Promise<void> {
    this.redials.delete(peer);
    if (this.stopping) return;
    const boot = this.bootstraps.get(peer);
    let peerId: PeerId;
    try {
      peerId = peerIdFromString(peer);
    } catch {
      return;
    }
    if (this.libp2p.getConnections(peerId).length > 0) return;
    const id = endpointIdFromPeerId(peerId);
    const record = id === undefined ? undefined : this.table.get(id);
    const member = record !== undefined && this.options.reachableOnlyViaRelay !== true;
    if (boot === undefined && !member) return;
    try {
      if (record !== undefined) await this.rememberAddrs(peerId, record);
      await this.libp2p.dial(boot ?? peerId, { signal: this.timeoutSignal(DIAL_TIMEOUT_MS) });
      this.log.info({ peer: id ? short(id) : peer, attempt }, 'reconnected');
    } catch (err) {
      if (this.stopping) return;
      this.log.debug({ peer: id ? short(id) : peer, attempt, err: (err as Error).message }, 'redial failed');
      this.scheduleRedial(peer, Math.min(attempt + 1, 16));
    }
  }

  private timeoutSignal(ms: number): AbortSignal {
    return anySignal(AbortSignal.timeout(ms), this.stopController.signal);
  }
}

function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

function short(endpointId: EndpointId): string {
  return endpointId.slice(0, 12);
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
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

/** A circuit-relay connection (limited, or dialled through /p2p-circuit). */
function isRelayed(connection: { limits?: unknown; remoteAddr: { toString(): string } }): boolean {
  return connection.limits !== undefined || connection.remoteAddr.toString().includes('/p2p-circuit');
}
