import { noise } from '@chainsafe/libp2p-noise';
import { quic } from '@chainsafe/libp2p-quic';
import { yamux } from '@chainsafe/libp2p-yamux';
import { autoNATv2 } from '@libp2p/autonat-v2';
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { dcutr } from '@libp2p/dcutr';
import { type Identify, identify } from '@libp2p/identify';
import type { Libp2p, PeerId } from '@libp2p/interface';
import { mdns } from '@libp2p/mdns';
import { type Ping, ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { uPnPNAT } from '@libp2p/upnp-nat';
import type { Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p, type Libp2pInit } from 'libp2p';
import { ConfigError } from '../errors.ts';
import { announceFilter, ownPublicAddrs, parseAnnounce } from './address-policy.ts';
import { libp2pComponentLogger } from './libp2p-logger.ts';
import { checkListenHost, type ListenPlan, listenPlan, meshPortFor } from './listen-addresses.ts';
import { MemberRelayPolicy, tableMembership } from './member-relay.ts';
import { noiseCrypto } from './noise-crypto.ts';
import { type AccessService, isRevokedPeer } from './services/access.ts';
import type { AppStreamsService } from './services/app-streams.ts';
import type { BootstrapService } from './services/bootstrap.ts';
import type { MeshContext } from './services/context.ts';
import { type DialerService, STREAM_LIMIT } from './services/dialer.ts';
import type { GossipService } from './services/gossip-service.ts';
import { meshHolePunch } from './services/hole-punch.ts';
import type { MembershipService } from './services/membership.ts';
import { meshReachability, type ReachabilityService } from './services/reachability.ts';
import type { RedialGuardService } from './services/redial-guard.ts';
import type { StaleConnectionService } from './services/stale-connections.ts';
import type { TransitiveLivenessService } from './services/transitive-liveness.ts';
import { coalesceTurnWrites } from './turn-coalescing.ts';

/** How the node listens and what it runs beside the mesh's own services. */
export interface NodeOptions {
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
  mdns?: boolean;
  /** libp2p's metrics implementation (e.g. @libp2p/prometheus-metrics), passed through as is. */
  metrics?: Libp2pInit['metrics'];
}

/** The listeners, and the addresses advertised beside theirs (announced, then our own public ones). */
export interface Listening {
  plan: ListenPlan;
  announce: Multiaddr[];
}

/** The services inside libp2p: libp2p's identify and ping, and the mesh's own. */
export type MeshServices = {
  identify: Identify;
  ping: Ping;
  meshAccess: AccessService;
  meshGossip: GossipService;
  meshMembership: MembershipService;
  meshBootstrap: BootstrapService;
  meshDialer: DialerService;
  meshAppStreams: AppStreamsService;
  meshStaleConnections: StaleConnectionService;
  meshRedialGuard: RedialGuardService;
  meshTransitiveLiveness: TransitiveLivenessService;
  meshReachability?: ReachabilityService;
};

export interface MeshNode {
  libp2p: Libp2p<MeshServices>;
  /** Removes what was attached outside libp2p (before it stops). */
  detach(): void;
}

// Window ≤ half of libp2p's 4 MiB read buffer, so a paused reader is never reset.
const YAMUX_MAX_WINDOW = 2 * 1024 * 1024;
const PING_INTERVAL_MS = 5_000;
const PING_TIMEOUT_MS = 5_000;

/** Checks the listen options and picks the port (the one this data dir used last, if free). */
export async function planListening(options: NodeOptions & { dataDir?: string }): Promise<Listening> {
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
  return { plan, announce: [...announce, ...own] };
}

/**
 * Creates the libp2p node (not started): transports, encryption and muxer, the connection
 * gater, reconnects and pings, and beside the mesh's `services` the NAT traversal and relay
 * services the options ask for.
 */
export async function createMeshNode(
  context: MeshContext,
  options: NodeOptions,
  listening: Listening,
  services: Record<string, unknown>,
): Promise<MeshNode> {
  const { plan, announce } = listening;
  const relayOnly = options.reachableOnlyViaRelay === true;
  const all: Record<string, unknown> = {
    identify: identify(),
    ping: ping({ runOnLimitedConnection: true }),
    ...services,
  };
  // A NATed node cannot be dialed directly, so hole punching must not "fix" the test setup.
  if (!relayOnly) {
    all.dcutr = dcutr();
    // DCUtR's exchange over TCP with predicted ports: what libp2p's DCUtR cannot do in Node.
    all.meshHolePunch = meshHolePunch(context);
    all.meshReachability = meshReachability(context, { announced: announce.length });
    // Confirms observed public addresses once four peers dialled them back (large meshes).
    all.autoNAT = autoNATv2();
  }
  if (options.upnp === true && !relayOnly) all.upnp = uPnPNAT();
  // Members relay without limits; strangers get libp2p's defaults (member-relay.ts).
  const relayPolicy = options.relay === true ? new MemberRelayPolicy(options.relaySlots) : undefined;
  let detachRelayPolicy: (() => void) | undefined;
  if (relayPolicy !== undefined) {
    all.relay = relayPolicy.service(STREAM_LIMIT);
    detachRelayPolicy = relayPolicy.attach(tableMembership(context.table, context.stopSignal));
  }
  // Every non-relay node also takes a reservation on a mesh relay when one is connected,
  // so a node behind a real NAT stays reachable; direct addresses are still dialed first.
  const listenAddrs = relayOnly ? ['/p2p-circuit'] : [...plan.addrs];
  if (!relayOnly && options.relay !== true && options.relayReservation !== false)
    listenAddrs.push('/p2p-circuit');
  const revoked = (peer: PeerId) => isRevokedPeer(context.membership, peer);
  const libp2p = (await createLibp2p({
    privateKey: context.identity.privateKey,
    logger: libp2pComponentLogger(),
    metrics: options.metrics,
    start: false,
    addresses: {
      listen: listenAddrs,
      appendAnnounce: announce.map((ma) => ma.toString()),
      announceFilter: announceFilter({ loopbackOnly: plan.loopbackOnly }),
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
      denyDialPeer: revoked,
      denyInboundEncryptedConnection: revoked,
      denyOutboundEncryptedConnection: revoked,
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
    services: all as any,
  })) as unknown as Libp2p<MeshServices>;
  const onOpen = (evt: CustomEvent<Parameters<typeof coalesceTurnWrites>[0]>) =>
    coalesceTurnWrites(evt.detail);
  libp2p.addEventListener('connection:open', onOpen);
  return {
    libp2p,
    detach: () => {
      libp2p.removeEventListener('connection:open', onOpen);
      detachRelayPolicy?.();
    },
  };
}
