import { KEEP_ALIVE, type PeerId, type Startable } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { ConfigError } from '../../errors.ts';
import { isCircuitAddr, RELAY_HEAD_START_MS, raceDial } from '../race-dial.ts';
import { listen, type MeshComponents, type MeshContext, timeoutSignal } from './context.ts';

/** Tag that keeps an invite's peers connected: libp2p's reconnect queue redials them. */
export const BOOTSTRAP_KEEP_ALIVE = `${KEEP_ALIVE}-mesh-bootstrap`;
const DIAL_TIMEOUT_MS = 10_000;
/** Retries of a bootstrap peer libp2p could not (re)connect: 1 s doubling up to 30 s. */
const RETRY_BASE_MS = 1_000;
const RETRY_CAP_MS = 30_000;

export interface BootstrapInit {
  /** Dial peers that mDNS finds on the LAN. */
  mdns: boolean;
  /** Called with each connection to a bootstrap peer (the first gossip exchange). */
  onConnected: (peer: PeerId) => Promise<void>;
}

/**
 * The peers of invite tokens: their addresses go into the peer store with a KEEP_ALIVE tag,
 * so libp2p redials them whenever they drop; when its reconnect queue gives up, they are tried
 * again later. A bootstrap peer is forgotten only when the mesh refused the invite there
 * (expired, revoked, unanswered): the connection is closed too, or it would gossip on, refused. Each of our own dials tries every address
 * of the token at once, circuits included: a token printed behind NAT holds LAN addresses that
 * lead nowhere from elsewhere, and libp2p's queue would spend its whole timeout on each in turn.
 * Also dials the peers that mDNS discovers.
 */
export class BootstrapService implements Startable {
  private readonly context: MeshContext;
  private readonly init: BootstrapInit;
  private readonly components: MeshComponents;
  /** Peer id string → multiaddrs from invite tokens. */
  private readonly bootstraps = new Map<string, Multiaddr[]>();
  private readonly retries = new Map<string, { timer: NodeJS.Timeout; attempt: number }>();
  private readonly detachers: Array<() => void> = [];
  private started = false;

  constructor(context: MeshContext, init: BootstrapInit, components: MeshComponents) {
    this.context = context;
    this.init = init;
    this.components = components;
  }

  start(): void {
    const { components, context } = this;
    this.started = true;
    this.detachers.push(
      listen(components, context.log, 'peer:reconnect-failure', (evt) => this.onReconnectFailure(evt.detail)),
    );
    if (this.init.mdns) {
      this.detachers.push(
        listen(components, context.log, 'peer:discovery', (evt) => {
          const id = evt.detail.id;
          if (components.connectionManager.getConnections(id).length > 0 || context.stopSignal.aborted)
            return;
          components.connectionManager
            .openConnection(id, { signal: timeoutSignal(context, DIAL_TIMEOUT_MS) })
            .catch((err: Error) => {
              context.log.debug({ peer: id.toString(), err: err.message }, 'mdns dial failed');
            });
        }),
      );
    }
  }

  stop(): void {
    this.started = false;
    for (const detach of this.detachers.splice(0)) detach();
    for (const { timer } of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
  }

  /** Remembers the peers of these multiaddrs; returns the peer ids that are new or changed. */
  add(addrs: readonly string[], self: string): string[] {
    const peers: string[] = [];
    for (const addr of addrs) {
      const ma = multiaddr(addr);
      const peer = ma.getComponents().at(-1)?.value;
      if (peer === undefined || peer === self) continue;
      const list = this.bootstraps.get(peer) ?? [];
      if (!list.some((m) => m.equals(ma))) list.push(ma);
      this.bootstraps.set(peer, list);
      if (!peers.includes(peer)) peers.push(peer);
    }
    return peers;
  }

  /** Whether `peer` (a peer id string) came from an invite token. */
  has(peer: string): boolean {
    return this.bootstraps.has(peer);
  }

  /** Every bootstrap peer known so far. */
  all(): string[] {
    return [...this.bootstraps.keys()];
  }

  /** Dials these bootstrap peers; failures are retried in the background. */
  async connect(peers: string[]): Promise<void> {
    const results = await Promise.allSettled(peers.map((p) => this.connectOne(p)));
    if (!results.some((r) => r.status === 'fulfilled') && peers.length > 0) {
      // The mesh refused the invite (expired, revoked): retrying cannot help; say why.
      const refusal = results.find((r) => r.status === 'rejected' && r.reason instanceof ConfigError);
      if (refusal !== undefined) throw (refusal as PromiseRejectedResult).reason;
      this.context.log.warn(
        { peers: peers.length },
        'could not reach any invite address yet; retrying in the background',
      );
      for (const peer of peers) this.scheduleRetry(peer);
    }
  }

  private async connectOne(peer: string): Promise<void> {
    const addrs = this.bootstraps.get(peer);
    if (addrs === undefined) return;
    const peerId = peerIdFromString(peer);
    await this.components.peerStore.merge(peerId, {
      multiaddrs: addrs.map((ma) => ma.decapsulateCode(421)),
      tags: { [BOOTSTRAP_KEEP_ALIVE]: { value: 1 } },
    });
    const connection =
      this.components.connectionManager.getConnections(peerId).find((c) => c.status === 'open') ??
      (await raceDial({
        transportManager: this.components.transportManager,
        direct: addrs.filter((ma) => !isCircuitAddr(ma)),
        circuits: addrs.filter(isCircuitAddr),
        headStartMs: RELAY_HEAD_START_MS,
        signal: timeoutSignal(this.context, DIAL_TIMEOUT_MS),
      }));
    try {
      await this.init.onConnected(connection.remotePeer);
    } catch (err) {
      if (err instanceof ConfigError) await this.forget(peer, peerId);
      throw err;
    }
  }

  private async forget(peer: string, peerId: PeerId): Promise<void> {
    this.bootstraps.delete(peer);
    clearTimeout(this.retries.get(peer)?.timer);
    this.retries.delete(peer);
    // Untagged first, so that libp2p's reconnect queue does not redial the closed connection.
    await this.components.peerStore
      .merge(peerId, { tags: { [BOOTSTRAP_KEEP_ALIVE]: undefined } })
      .catch(() => undefined);
    await this.components.connectionManager.closeConnections(peerId).catch(() => undefined);
  }

  private onReconnectFailure(peerId: PeerId): void {
    const key = peerId.toString();
    if (this.bootstraps.has(key)) this.scheduleRetry(key);
  }

  private scheduleRetry(peer: string, attempt = 0): void {
    if (!this.started || (attempt === 0 && this.retries.has(peer))) return;
    const delay = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** attempt) * (0.75 + Math.random() * 0.5);
    const timer = setTimeout(() => {
      this.retries.delete(peer);
      if (!this.started || this.context.stopSignal.aborted) return;
      this.connectOne(peer).then(
        () => this.context.log.info({ peer }, 'reconnected'),
        (err: Error) => {
          this.context.log.debug({ peer, attempt, err: err.message }, 'bootstrap dial failed');
          this.scheduleRetry(peer, Math.min(attempt + 1, 16));
        },
      );
    }, delay);
    timer.unref();
    this.retries.set(peer, { timer, attempt });
  }
}

export function meshBootstrap(
  context: MeshContext,
  init: BootstrapInit,
): (components: MeshComponents) => BootstrapService {
  return (components) => new BootstrapService(context, init, components);
}
