import { type Connection, KEEP_ALIVE, type PeerId, type Startable } from '@libp2p/interface';
import { setNewest } from '../bounded-map.ts';
import { listen, type MeshComponents, type MeshContext } from './context.ts';

/** Bounds of the guard: what counts as a refusal, and how many peers it remembers. */
export const REDIAL_GUARD = {
  /** A peer's last connection that closed sooner than this after opening. */
  quickCloseMs: 3_000,
  /** This many quick closes within `windowMs` stop the redials. */
  quickCloses: 3,
  windowMs: 30_000,
  maxPeers: 1024,
} as const;

/**
 * Stops libp2p's reconnect queue from redialling a peer that keeps closing our connections
 * the moment they open (it revoked us, or refuses us for another reason). The queue redials a
 * KEEP_ALIVE peer on every disconnect and counts only failed dials, so a connection the other
 * side accepts and closes restarts it at once: a revoked member dialled its former peers ten
 * times a second, and their per-address inbound limit then refused honest nodes behind the
 * same address. After `quickCloses` such closes the peer's KEEP_ALIVE tags go, as the queue
 * itself removes them when its retries run out; they come back once a connection to it (the
 * gossip's or a request's) stays open for `quickCloseMs`.
 */
export class RedialGuardService implements Startable {
  private readonly context: MeshContext;
  private readonly components: MeshComponents;
  private readonly detachers: Array<() => void> = [];
  /** Peer id → times of its recent quick closes (oldest peers go first past maxPeers). */
  private readonly closes = new Map<string, number[]>();
  /** Peer id → the tags taken from it (oldest peers go first past maxPeers). */
  private readonly untagged = new Map<string, string[]>();
  /** Peer id → the check of its newest connection (one per untagged peer). */
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(context: MeshContext, components: MeshComponents) {
    this.context = context;
    this.components = components;
  }

  start(): void {
    this.detachers.push(
      listen(this.components, this.context.log, 'connection:close', (evt) => void this.onClose(evt.detail)),
      listen(this.components, this.context.log, 'connection:open', (evt) => this.onOpen(evt.detail)),
    );
  }

  stop(): void {
    for (const detach of this.detachers.splice(0)) detach();
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.closes.clear();
    this.untagged.clear();
  }

  /** Entries held (tests check the bounds). */
  sizes(): { closes: number; untagged: number; timers: number } {
    return { closes: this.closes.size, untagged: this.untagged.size, timers: this.timers.size };
  }

  /** A connection to an untagged peer that lasts gives the peer its tags back. */
  private onOpen(connection: Connection): void {
    const peer = connection.remotePeer.toString();
    if (!this.untagged.has(peer)) return;
    clearTimeout(this.timers.get(peer));
    const timer = setTimeout(() => {
      this.timers.delete(peer);
      const tags = this.untagged.get(peer);
      if (tags === undefined || connection.status !== 'open' || this.context.stopSignal.aborted) return;
      this.untagged.delete(peer);
      this.closes.delete(peer);
      this.retag(connection.remotePeer, Object.fromEntries(tags.map((tag) => [tag, { value: 1 }])));
    }, REDIAL_GUARD.quickCloseMs);
    timer.unref();
    this.timers.set(peer, timer);
  }

  private async onClose(connection: Connection): Promise<void> {
    const peer = connection.remotePeer;
    const { open, close } = connection.timeline;
    // libp2p stamps the timeline with the wall clock.
    const closedAt = close ?? Date.now();
    if (closedAt - open >= REDIAL_GUARD.quickCloseMs) {
      this.closes.delete(peer.toString());
      return;
    }
    // Duplicates closed beside a connection that stays are not refusals.
    if (this.components.connectionManager.getConnections(peer).length > 0) return;
    if (!this.record(peer.toString(), closedAt)) return;
    const tags = await this.keepAliveTags(peer);
    if (tags.length === 0 || this.context.stopSignal.aborted) return;
    setNewest(this.untagged, peer.toString(), tags, REDIAL_GUARD.maxPeers);
    this.retag(peer, Object.fromEntries(tags.map((tag) => [tag, undefined])));
    this.context.log.info(
      { peer: peer.toString() },
      'peer keeps closing our connections at once; no longer redialled',
    );
  }

  /** Records a quick close; true when the peer reached the limit within the window. */
  private record(peer: string, at: number): boolean {
    const recent = (this.closes.get(peer) ?? []).filter((t) => at - t < REDIAL_GUARD.windowMs);
    recent.push(at);
    setNewest(this.closes, peer, recent.slice(-REDIAL_GUARD.quickCloses), REDIAL_GUARD.maxPeers);
    return recent.length >= REDIAL_GUARD.quickCloses;
  }

  private retag(peer: PeerId, tags: Record<string, { value: number } | undefined>): void {
    this.components.peerStore
      .merge(peer, { tags })
      .catch((err: Error) => this.context.log.debug({ err: err.message }, 'could not retag a peer'));
  }

  private async keepAliveTags(peer: PeerId): Promise<string[]> {
    try {
      const stored = await this.components.peerStore.get(peer);
      return [...stored.tags.keys()].filter((tag) => tag.startsWith(KEEP_ALIVE));
    } catch {
      return [];
    }
  }
}

export function meshRedialGuard(context: MeshContext): (components: MeshComponents) => RedialGuardService {
  return (components) => new RedialGuardService(context, components);
}
