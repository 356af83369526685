import { RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2';
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { UpstreamError } from '../../errors.ts';
import { peerIdFromEndpointId } from '../identity.ts';
import type { EndpointId, PeerRecord } from '../types.ts';
import { listen, type MeshComponents, type MeshContext, short } from './context.ts';

/** Streams per protocol and connection, each way. */
export const STREAM_LIMIT = 1024;

export interface OpenedStream {
  stream: Stream;
  path: 'direct' | 'relay';
}

/**
 * Opens outbound streams to members: over an existing connection, else by dialling the
 * addresses the peer announced (signed), else through a circuit on each relay we know.
 */
export class DialerService implements Startable {
  private readonly context: MeshContext;
  private readonly components: MeshComponents;
  /** Connected peers whose identify listed the circuit-relay hop protocol. */
  private readonly relayPeers = new Set<string>();
  private readonly detachers: Array<() => void> = [];

  constructor(context: MeshContext, components: MeshComponents) {
    this.context = context;
    this.components = components;
  }

  start(): void {
    const { components, context } = this;
    this.detachers.push(
      listen(components, context.log, 'peer:identify', (evt) => {
        if (evt.detail.protocols.includes(RELAY_V2_HOP_CODEC))
          this.relayPeers.add(evt.detail.peerId.toString());
      }),
      listen(components, context.log, 'peer:disconnect', (evt) => {
        this.relayPeers.delete(evt.detail.toString());
      }),
    );
  }

  stop(): void {
    for (const detach of this.detachers.splice(0)) detach();
  }

  /** A new outbound stream: over the existing or a fresh connection, else through a relay. */
  async negotiate(endpointId: EndpointId, protocol: string, signal: AbortSignal): Promise<OpenedStream> {
    const { connectionManager } = this.components;
    const peerId = peerIdFromEndpointId(endpointId);
    const record = this.context.table.get(endpointId);
    const connected = connectionManager.getConnections(peerId).length > 0;
    if (record === undefined && !connected) {
      throw new UpstreamError(`peer ${short(endpointId)} is not known in this mesh`, 'peer_unknown');
    }
    if (!connected && record !== undefined) await this.rememberAddrs(peerId, record);
    const streamOptions = { signal, runOnLimitedConnection: true, maxOutboundStreams: STREAM_LIMIT };
    try {
      const connection = await connectionManager.openConnection(peerId, { signal });
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

  private async dialViaRelays(
    peerId: PeerId,
    protocol: string,
    streamOptions: { signal: AbortSignal; runOnLimitedConnection: boolean; maxOutboundStreams: number },
  ): Promise<Stream | undefined> {
    for (const relay of this.relayPeers) {
      if (relay === peerId.toString() || streamOptions.signal.aborted) continue;
      try {
        const circuit = multiaddr(`/p2p/${relay}/p2p-circuit/p2p/${peerId.toString()}`);
        const connection = await this.components.connectionManager.openConnection(circuit, streamOptions);
        return await connection.newStream(protocol, streamOptions);
      } catch (err) {
        this.context.log.debug({ relay, err: (err as Error).message }, 'relay circuit dial failed');
      }
    }
    return undefined;
  }

  /** Puts a peer's announced addresses (signed by it) into the peer store for dialing. */
  async rememberAddrs(peerId: PeerId, record: PeerRecord): Promise<void> {
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
      await this.components.peerStore.merge(peerId, { multiaddrs: addrs });
    } catch (err) {
      this.context.log.debug({ peer: target, err: (err as Error).message }, 'peer store merge failed');
    }
  }
}

export function meshDialer(context: MeshContext): (components: MeshComponents) => DialerService {
  return (components) => new DialerService(context, components);
}

/** A circuit-relay connection (limited, or dialled through /p2p-circuit). */
export function isRelayed(connection: Pick<Connection, 'limits' | 'remoteAddr'>): boolean {
  return connection.limits !== undefined || connection.remoteAddr.toString().includes('/p2p-circuit');
}
