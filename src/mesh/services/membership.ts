import { KEEP_ALIVE, type PeerId, type Startable } from '@libp2p/interface';
import { endpointIdFromPeerId, peerIdFromEndpointId } from '../identity.ts';
import type { EndpointId } from '../types.ts';
import { listen, type MeshComponents, type MeshContext } from './context.ts';

/** Tag that makes libp2p's reconnect queue redial a member whose connection dropped. */
export const MEMBER_KEEP_ALIVE = `${KEEP_ALIVE}-mesh-member`;
/** How long a dropped connection may take to come back before its peer counts as lost. */
export const LOSS_GRACE_MS = 3_000;

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
  /** Members tagged KEEP_ALIVE (so a heartbeat's announcement does not tag them again). */
  private readonly tagged = new Set<EndpointId>();
  /** Peers lost: their connection died and stayed dead → the seq of their last announcement. */
  private readonly lost = new Map<EndpointId, bigint>();
  private readonly lossTimers = new Map<EndpointId, NodeJS.Timeout>();

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
        if (event.type === 'updated') {
          const { endpointId, connected, seq } = event.peer;
          if (connected && !this.tagged.has(endpointId)) this.keepAlive(endpointId, true);
          // A newer announcement is a sign of life: it is dialled again on the next request.
          if (connected || (this.lost.get(endpointId) ?? seq) < seq) this.lost.delete(endpointId);
        } else {
          if (this.tagged.has(event.endpointId)) this.keepAlive(event.endpointId, false);
          this.lost.delete(event.endpointId);
          clearTimeout(this.lossTimers.get(event.endpointId));
          this.lossTimers.delete(event.endpointId);
        }
      }),
    );
    this.rttTimer = setInterval(() => this.refreshRtt(), context.heartbeatMs);
    this.rttTimer.unref();
  }

  stop(): void {
    clearInterval(this.rttTimer);
    for (const timer of this.lossTimers.values()) clearTimeout(timer);
    this.lossTimers.clear();
    for (const detach of this.detachers.splice(0)) detach();
  }

  /**
   * A peer whose connection died and was not back within LOSS_GRACE_MS (libp2p's reconnect
   * queue tries meanwhile): left out of routing until it announces itself again or reconnects.
   */
  isLost(endpointId: EndpointId): boolean {
    return this.lost.has(endpointId);
  }

  /** Leaves an unconnected peer out of routing as if its connection had died (transitive checks). */
  markUnreachable(endpointId: EndpointId, seq: bigint): void {
    const record = this.context.table.get(endpointId);
    if (record === undefined || record.connected || record.seq !== seq) return;
    this.lost.set(endpointId, seq);
  }

  /** Whether the peer's last connection closed and it has not reconnected (lost, or within the grace). */
  connectionLost(endpointId: EndpointId): boolean {
    return this.lossTimers.has(endpointId) || this.lost.has(endpointId);
  }

  private onConnect(peerId: PeerId): void {
    const id = endpointIdFromPeerId(peerId);
    if (id === undefined) return;
    clearTimeout(this.lossTimers.get(id));
    this.lossTimers.delete(id);
    this.lost.delete(id);
    this.context.table.setConnected(id, true);
  }

  private onDisconnect(peerId: PeerId): void {
    const id = endpointIdFromPeerId(peerId);
    if (id === undefined) return;
    this.context.table.setConnected(id, false);
    this.init.onDisconnect?.(id);
    if (this.context.table.get(id) === undefined || this.lossTimers.has(id)) return;
    const timer = setTimeout(() => {
      this.lossTimers.delete(id);
      const record = this.context.table.get(id);
      if (record === undefined || record.connected || this.context.stopSignal.aborted) return;
      this.lost.set(id, record.seq);
      this.context.log.info({ peer: id.slice(0, 12) }, 'peer connection lost, left out of routing');
    }, LOSS_GRACE_MS);
    timer.unref();
    this.lossTimers.set(id, timer);
  }

  private keepAlive(endpointId: EndpointId, on: boolean): void {
    if (!this.init.redialMembers || this.context.stopSignal.aborted) return;
    if (on) this.tagged.add(endpointId);
    else this.tagged.delete(endpointId);
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
