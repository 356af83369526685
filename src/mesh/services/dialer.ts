import { RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2';
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import { UpstreamError } from '../../errors.ts';
import { DialGuard } from '../dial-guard.ts';
import { peerIdFromEndpointId } from '../identity.ts';
import type { EndpointId } from '../types.ts';
import { listen, type MeshComponents, type MeshContext, short } from './context.ts';

/** Streams per protocol and connection, each way. */
export const STREAM_LIMIT = 1024;

export interface OpenedStream {
  stream: Stream;
  path: 'direct' | 'relay';
}

/**
 * Opens outbound streams to members: over an existing connection, else by dialling the
 * addresses the peer announced (within their dial budgets), else through a circuit on each
 * relay we know.
 */
export class DialerService implements Startable {
  private readonly context: MeshContext;
  private readonly components: MeshComponents;
  /** Connected peers whose identify listed the circuit-relay hop protocol. */
  private readonly relayPeers = new Set<string>();
  private readonly detachers: Array<() => void> = [];
  private readonly guard: DialGuard;

  constructor(context: MeshContext, components: MeshComponents) {
    this.context = context;
    this.components = components;
    this.guard = new DialGuard(context.clock);
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
    const streamOptions = { signal, runOnLimitedConnection: true, maxOutboundStreams: STREAM_LIMIT };
    try {
      // Not connected: only the announced addresses still within their dial budgets.
      const target = connected
        ? peerId
        : this.guard.admit(endpointId, peerId.toString(), record!.announcement.listenAddrs);
      if (Array.isArray(target) && target.length === 0)
        throw new UpstreamError('dial budget spent', 'dial_limited');
      const connection = await connectionManager.openConnection(target, { signal });
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
}

export function meshDialer(context: MeshContext): (components: MeshComponents) => DialerService {
  return (components) => new DialerService(context, components);
}

/** A circuit-relay connection (limited, or dialled through /p2p-circuit). */
export function isRelayed(connection: Pick<Connection, 'limits' | 'remoteAddr'>): boolean {
  return connection.limits !== undefined || connection.remoteAddr.toString().includes('/p2p-circuit');
}
