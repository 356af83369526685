import { createServer } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type {
  Connection,
  DialTransportOptions,
  MultiaddrConnection,
  Startable,
  Stream,
  Upgrader,
  UpgraderOptions,
} from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { type PunchMessage, PunchMessage_Type, PunchMessageSchema } from '../../proto/gen/mesh_pb.js';
import { isPublicAddress } from '../address-policy.ts';
import { endpointIdFromPeerId } from '../identity.ts';
import { PunchBackoff } from '../punch-backoff.ts';
import { isRelayed } from '../race-dial.ts';
import { listen, type MeshComponents, type MeshContext, timeoutSignal } from './context.ts';

export const PROTOCOL_PUNCH = '/mesh-llm/punch/1.0.0';

/** Bounds: a peer can hold at most this much of our time, sockets and memory. */
export const PUNCH_BOUNDS = {
  /** One exchange (CONNECT, CONNECT, SYNC) over the relay. */
  exchangeMs: 5_000,
  /** The simultaneous dial after SYNC. */
  dialMs: 5_000,
  /** Tries in a round (the n-th failure waits n × retryMs). */
  attempts: 3,
  retryMs: 1_000,
  /** After a failed round, the next one while the relayed connection lasts (punch-backoff.ts). */
  backoff: { firstMs: 30_000, maxMs: 10 * 60_000, maxPeers: 1024 },
  /** Punches in progress at once, both roles together. */
  concurrent: 4,
  messageBytes: 512,
} as const;

type PunchComponents = MeshComponents & { upgrader: Upgrader };

/**
 * Replaces a relayed connection with a direct TCP one where both NATs allow it: DCUtR's
 * exchange (libp2p/specs relay/DCUtR.md) with predicted addresses. libp2p's own DCUtR cannot
 * do it in Node: it dials the addresses peers observed, but our dials never leave from the
 * listeners' ports (@libp2p/tcp has no port reuse, @chainsafe/libp2p-quic dials from an
 * endpoint of its own), so no NAT ever maps a listener and every punch misses.
 *
 * Instead each side picks a free local port, says where its NAT will map it (its public IP as
 * public peers observe it, and that port: NATs that keep the source port, as Linux's and most
 * home routers do, map it there), and after SYNC both dial each other from that port: a TCP
 * simultaneous open, which the kernel completes into one connection. The side that received
 * the relayed connection starts and acts as the listener in the security handshake
 * (`initiator: false`, as libp2p's DCUtR does). Behind a symmetric NAT the prediction misses and
 * the peer stays relayed.
 */
export class HolePunchService implements Startable {
  private readonly context: MeshContext;
  private readonly components: PunchComponents;
  private readonly detachers: Array<() => void> = [];
  /** Our public IPv4 address as a public peer last observed it over a direct connection. */
  private publicIp: string | undefined;
  /** Peers we are punching towards (as the starting side), and punches we answer. */
  private readonly initiating = new Set<string>();
  private responding = 0;
  private readonly backoff: PunchBackoff;
  /** Peer id → the next round's timer (at most one per peer the backoff remembers). */
  private readonly retries = new Map<string, NodeJS.Timeout>();

  constructor(context: MeshContext, components: PunchComponents) {
    this.context = context;
    this.components = components;
    this.backoff = new PunchBackoff(PUNCH_BOUNDS.backoff, context.clock);
  }

  async start(): Promise<void> {
    const { components, context } = this;
    await components.registrar.handle(
      PROTOCOL_PUNCH,
      (stream, connection) => {
        void this.respond(stream, connection).catch((err: Error) => {
          stream.abort(err);
          context.log.debug(
            { peer: connection.remotePeer.toString(), err: err.message },
            'hole punch refused',
          );
        });
      },
      { runOnLimitedConnection: true, maxInboundStreams: 2, maxOutboundStreams: 2 },
    );
    this.detachers.push(
      listen(components, context.log, 'peer:identify', (evt) => {
        const { connection, observedAddr, protocols } = evt.detail;
        if (isRelayed(connection)) {
          if (connection.direction === 'inbound' && protocols.includes(PROTOCOL_PUNCH))
            void this.initiate(connection);
        } else if (observedAddr !== undefined && publicIp4(connection.remoteAddr) !== undefined) {
          const ip = publicIp4(observedAddr);
          if (ip !== undefined) this.publicIp = ip;
        }
      }),
    );
  }

  async stop(): Promise<void> {
    for (const detach of this.detachers.splice(0)) detach();
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
    await this.components.registrar.unhandle(PROTOCOL_PUNCH).catch(() => undefined);
  }

  /** The side that received the relayed connection: CONNECT, CONNECT back, SYNC, then dial. */
  private async initiate(relayed: Connection, scheduled = false): Promise<void> {
    const peer = relayed.remotePeer.toString();
    if (!this.mayStart(peer, scheduled)) return;
    this.initiating.add(peer);
    try {
      for (let attempt = 1; attempt <= PUNCH_BOUNDS.attempts; attempt++) {
        if (relayed.status !== 'open' || this.hasDirect(relayed) || this.context.stopSignal.aborted) return;
        try {
          const connection = await this.initiateOnce(relayed);
          this.context.log.info({ peer, address: connection.remoteAddr.toString() }, 'hole punched: direct');
          this.backoff.succeeded(peer);
          return;
        } catch (err) {
          this.context.log.debug({ peer, attempt, err: (err as Error).message }, 'hole punch failed');
          await delay(attempt * PUNCH_BOUNDS.retryMs, undefined, { signal: this.context.stopSignal }).catch(
            () => undefined,
          );
        }
      }
      this.retryLater(peer, relayed);
    } finally {
      this.initiating.delete(peer);
    }
  }

  private retryLater(peer: string, relayed: Connection): void {
    const waitMs = this.backoff.failed(peer);
    clearTimeout(this.retries.get(peer));
    this.retries.delete(peer);
    if (this.context.stopSignal.aborted || this.retries.size >= PUNCH_BOUNDS.backoff.maxPeers) return;
    const timer = setTimeout(() => {
      this.retries.delete(peer);
      // The relayed connection may have been replaced meanwhile: any inbound one will do.
      const current = this.components.connectionManager
        .getConnections(relayed.remotePeer)
        .find((c) => c.status === 'open' && isRelayed(c) && c.direction === 'inbound');
      if (current !== undefined && !this.hasDirect(current)) void this.initiate(current, true);
    }, waitMs);
    timer.unref();
    this.retries.set(peer, timer);
  }

  private async initiateOnce(relayed: Connection): Promise<Connection> {
    const publicIp = this.publicIp;
    if (publicIp === undefined) throw new Error('no public address observed yet');
    const signal = timeoutSignal(this.context, PUNCH_BOUNDS.exchangeMs);
    const stream = await relayed.newStream(PROTOCOL_PUNCH, { signal, runOnLimitedConnection: true });
    try {
      const messages = framed(stream);
      const port = await freeTcpPort();
      const sentAt = performance.now();
      await messages.write(PunchMessage_Type.CONNECT, [punchAddr(publicIp, port)], signal);
      const theirs = dialableAddr(await messages.read(PunchMessage_Type.CONNECT, signal));
      const rtt = performance.now() - sentAt;
      await messages.write(PunchMessage_Type.SYNC, [], signal);
      await stream.close({ signal }).catch(() => undefined);
      await delay(rtt / 2);
      return await this.dial(theirs, relayed, port, true);
    } catch (err) {
      stream.abort(err as Error);
      throw err;
    }
  }

  /** The side that dialled through the relay: answers CONNECT with its own, dials on SYNC. */
  private async respond(stream: Stream, relayed: Connection): Promise<void> {
    const peer = relayed.remotePeer.toString();
    const publicIp = this.publicIp;
    if (!isRelayed(relayed)) throw new Error('a hole punch needs a relayed connection');
    // We dial where the peer says: only for members (DCUtR answers anyone).
    const remote = endpointIdFromPeerId(relayed.remotePeer);
    if (remote === undefined || this.context.table.get(remote) === undefined)
      throw new Error('not a member of this mesh');
    if (publicIp === undefined) throw new Error('no public address observed yet');
    if (this.busy()) throw new Error('too many hole punches at once');
    this.responding++;
    try {
      const signal = timeoutSignal(this.context, PUNCH_BOUNDS.exchangeMs);
      const messages = framed(stream);
      const theirs = dialableAddr(await messages.read(PunchMessage_Type.CONNECT, signal));
      const port = await freeTcpPort();
      await messages.write(PunchMessage_Type.CONNECT, [punchAddr(publicIp, port)], signal);
      await messages.read(PunchMessage_Type.SYNC, signal);
      await stream.close({ signal }).catch(() => undefined);
      const connection = await this.dial(theirs, relayed, port, false);
      this.context.log.info({ peer, address: connection.remoteAddr.toString() }, 'hole punched: direct');
    } finally {
      this.responding--;
    }
  }

  /**
   * Dials `theirs` from local port `port` (@libp2p/tcp hands its dial options to net.connect:
   * `localPort`). The listener's side of the simultaneous open upgrades it as libp2p's DCUtR
   * does (`initiator: false`), and says so in the connection's direction too, which the muxer
   * reads to pick its role (yamux: "Both endpoints are clients" otherwise).
   */
  private dial(
    theirs: Multiaddr,
    relayed: Connection,
    port: number,
    asListener: boolean,
  ): Promise<Connection> {
    const target = theirs.encapsulate(`/p2p/${relayed.remotePeer.toString()}`);
    const transport = this.components.transportManager.dialTransportForMultiaddr(target);
    if (transport === undefined) return Promise.reject(new Error('no TCP transport'));
    const { upgrader } = this.components;
    const options = {
      signal: timeoutSignal(this.context, PUNCH_BOUNDS.dialMs),
      upgrader: asListener ? listenerRole(upgrader) : upgrader,
      localPort: port,
    } as DialTransportOptions;
    return transport.dial(target, options);
  }

  /** `scheduled`: the round retryLater set up, due now (timers and the clock may disagree by a ms). */
  private mayStart(peer: string, scheduled: boolean): boolean {
    return !this.initiating.has(peer) && !this.busy() && (scheduled || this.backoff.mayTry(peer));
  }

  private busy(): boolean {
    return this.initiating.size + this.responding >= PUNCH_BOUNDS.concurrent;
  }

  private hasDirect(relayed: Connection): boolean {
    return this.components.connectionManager
      .getConnections(relayed.remotePeer)
      .some((c) => c.status === 'open' && !isRelayed(c));
  }
}

export function meshHolePunch(context: MeshContext): (components: PunchComponents) => HolePunchService {
  return (components) => new HolePunchService(context, components);
}

/** `upgrader`, with outbound upgrades done in the listener's role (see HolePunchService.dial). */
function listenerRole(upgrader: Upgrader): Upgrader {
  return {
    upgradeOutbound: (maConn: MultiaddrConnection, opts: UpgraderOptions) => {
      (maConn as { direction: MultiaddrConnection['direction'] }).direction = 'inbound';
      return upgrader.upgradeOutbound(maConn, { ...opts, initiator: false });
    },
    upgradeInbound: (maConn: MultiaddrConnection, opts: UpgraderOptions) =>
      upgrader.upgradeInbound(maConn, opts),
    createInboundAbortSignal: (signal) => upgrader.createInboundAbortSignal(signal),
    getStreamMuxers: () => upgrader.getStreamMuxers(),
    getConnectionEncrypters: () => upgrader.getConnectionEncrypters(),
  } as Upgrader;
}

function framed(stream: Stream) {
  const lp = lpStream(stream, { maxDataLength: PUNCH_BOUNDS.messageBytes });
  return {
    write: (type: PunchMessage_Type, addrs: Multiaddr[], signal: AbortSignal) =>
      lp.write(
        toBinary(PunchMessageSchema, create(PunchMessageSchema, { type, addrs: addrs.map((a) => a.bytes) })),
        {
          signal,
        },
      ),
    read: async (type: PunchMessage_Type, signal: AbortSignal): Promise<PunchMessage> => {
      const message = fromBinary(PunchMessageSchema, (await lp.read({ signal })).subarray());
      if (message.type !== type) throw new Error(`expected ${PunchMessage_Type[type]}, got another message`);
      return message;
    },
  };
}

function punchAddr(ip: string, port: number): Multiaddr {
  return multiaddr(`/ip4/${ip}/tcp/${port}`);
}

/** The peer's predicted address: one public /ip4/…/tcp/PORT, nothing else. */
export function dialableAddr(message: PunchMessage): Multiaddr {
  const first = message.addrs[0];
  if (first === undefined) throw new Error('the peer sent no address');
  const ma = multiaddr(first);
  const parts = ma.getComponents();
  const port = Number(parts[1]?.value);
  if (
    parts.length !== 2 ||
    parts[0]?.name !== 'ip4' ||
    parts[1]?.name !== 'tcp' ||
    !(port > 0 && port < 65536)
  )
    throw new Error('the peer sent an address that is not /ip4/…/tcp/PORT');
  if (publicIp4(ma) === undefined) throw new Error('the peer sent an address that is not public');
  return ma;
}

function publicIp4(ma: Multiaddr): string | undefined {
  const first = ma.getComponents()[0];
  if (first?.name !== 'ip4' || !isPublicAddress(ma)) return undefined;
  return first.value;
}

/** A TCP port free on every interface right now (the OS picks it). */
function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '0.0.0.0', exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free TCP port'))));
    });
  });
}
