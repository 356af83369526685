import { KEEP_ALIVE, type PeerId, type Startable } from '@libp2p/interface';
import { endpointIdFromPeerId, peerIdFromEndpointId } from '../identity.ts';
import type { EndpointId } from '../types.ts';
import { listen, type MeshComponents, type MeshContext } from './context.ts';

/** Tag that makes libp2p's reconnect queue redial a member whose connection dropped. */
export const MEMBER_KEEP_ALIVE = `${KEEP_ALIVE}-mesh-member`;

export interface MembershipInit {
  /** A NATed node cannot be dialled back, so it leaves reconnecting to the other side. */
  redialMembers: boolean;
  /** Told when a peer's last connection closed (warm streams to it are dropped). */
  onDisconnect?: (endpointId: EndpointId) => void;
}

/**
 * Keeps the peer table's view of connections true: connected flags on connect and disconnect,
 * round-trip times from libp2p's connection monitor, and a KEEP_ALIVE tag on every member
 * we are connected to so libp2p's reconnect queue redials it when the connection drops.
 */
export class MembershipService implements Startable {
  private readonly context: MeshContext;
  private readonly components: MeshComponents;
  private readonly init: MembershipInit;
  private readonly detachers: Array<() => void> = [];
  private rttTimer: NodeJS.Timeout | undefined;

  constructor(context: MeshContext, init: MembershipInit, components: MeshComponents) {
    this.context = context;
    this.init = init;
    this.components = components;
  }

  start(): void {
    const { components, context } = this;
    this.detachers.push(
      listen(components, context.log, 'peer:connect', (evt) => this.onConnect(evt.detail)),
      listen(components, context.log, 'peer:disconnect', (evt) => this.onDisconnect(evt.detail)),
      context.table.onEvent((event) => {
        if (event.type === 'updated' && event.peer.connected) this.keepAlive(event.peer.endpointId, true);
        if (event.type === 'removed') this.keepAlive(event.endpointId, false);
      }),
    );
    this.rttTimer = setInterval(() => this.refreshRtt(), context.heartbeatMs);
    this.rttTimer.unref();
  }

  stop(): void {
    clearInterval(this.rttTimer);
    for (const detach of this.detachers.splice(0)) detach();
  }

  private onConnect(peerId: PeerId): void {
    const id = endpointIdFromPeerId(peerId);
    if (id !== undefined) this.context.table.setConnected(id, true);
  }

  private onDisconnect(peerId: PeerId): void {
    const id = endpointIdFromPeerId(peerId);
    if (id === undefined) return;
    this.context.table.setConnected(id, false);
    this.init.onDisconnect?.(id);
  }

  private keepAlive(endpointId: EndpointId, on: boolean): void {
    if (!this.init.redialMembers || this.context.stopSignal.aborted) return;
    const tags = on ? { [MEMBER_KEEP_ALIVE]: { value: 1 } } : { [MEMBER_KEEP_ALIVE]: undefined };
    this.components.peerStore.merge(peerIdFromEndpointId(endpointId), { tags }).catch((err: Error) => {
      this.context.log.debug({ err: err.message }, 'could not tag a member');
    });
  }

  /** Copies the round-trip times libp2p's connection monitor measured into the table. */
  private refreshRtt(): void {
    const { table } = this.context;
    for (const peer of table.list()) {
      const rtt = bestRtt(this.components, peer.endpointId);
      if (rtt !== undefined) table.setRtt(peer.endpointId, rtt);
    }
  }
}

function bestRtt(components: MeshComponents, endpointId: EndpointId): number | undefined {
  let best: number | undefined;
  for (const connection of components.connectionManager.getConnections(peerIdFromEndpointId(endpointId))) {
    if (connection.rtt !== undefined && (best === undefined || connection.rtt < best)) best = connection.rtt;
  }
  return best;
}

export function meshMembership(
  context: MeshContext,
  init: MembershipInit,
): (components: MeshComponents) => MembershipService {
  return (components) => new MembershipService(context, init, components);
}
