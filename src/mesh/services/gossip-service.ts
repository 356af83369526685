import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface';
import type { SignedAnnouncement } from '../../proto/gen/mesh_pb.js';
import { isMalformedFrame } from '../frames.ts';
import {
  type GossipEntry,
  GossipError,
  newsFor,
  requestGossip,
  respondGossip,
  splitGossip,
} from '../gossip.ts';
import { endpointIdFromPeerId, endpointIdToBytes } from '../identity.ts';
import { checkMembershipProof, membershipProof } from '../membership.ts';
import { type EndpointId, PROTOCOL_GOSSIP } from '../types.ts';
import {
  listen,
  type MeshComponents,
  type MeshContext,
  raceTimeout,
  short,
  timeoutSignal,
} from './context.ts';

const GOSSIP_TIMEOUT_MS = 10_000;
const LEAVE_TIMEOUT_MS = 2_000;
const PUSH_DEBOUNCE_MS = 20;

/**
 * Announcement gossip (SPEC §4): anti-entropy exchanges each heartbeat, news pushed at once,
 * and the silent-peer sweep. A stranger that dials us must reveal a same-mesh announcement
 * before it learns anything.
 */
export class GossipService implements Startable {
  private readonly context: MeshContext;
  private readonly components: MeshComponents;
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly rerun = new Map<string, Promise<void>>();
  /** Origins whose announcement changed (or left) since the last push. */
  private readonly news = new Set<EndpointId>();
  /** Peers whose identify listed the gossip protocol. */
  private readonly capable = new Set<string>();
  private readonly detachers: Array<() => void> = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private pushTimer: NodeJS.Timeout | undefined;

  constructor(context: MeshContext, components: MeshComponents) {
    this.context = context;
    this.components = components;
  }

  private get stopping(): boolean {
    return this.context.stopSignal.aborted;
  }

  async start(): Promise<void> {
    const { components, context } = this;
    await components.registrar.handle(
      PROTOCOL_GOSSIP,
      (stream, connection) => {
        void this.onStream(stream, connection);
      },
      { runOnLimitedConnection: true, maxInboundStreams: 64, maxOutboundStreams: 64 },
    );
    this.detachers.push(
      listen(components, context.log, 'peer:identify', (evt) => {
        const result = evt.detail;
        if (!result.protocols.includes(PROTOCOL_GOSSIP)) return;
        this.capable.add(result.peerId.toString());
        if (this.shouldGossipWith(result.peerId)) void this.exchange(result.peerId);
      }),
      listen(components, context.log, 'peer:disconnect', (evt) => {
        this.capable.delete(evt.detail.toString());
      }),
    );
    this.heartbeat = setInterval(() => void this.tick(), context.heartbeatMs);
    this.heartbeat.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    clearTimeout(this.pushTimer);
    for (const detach of this.detachers.splice(0)) detach();
    await this.components.registrar.unhandle(PROTOCOL_GOSSIP).catch(() => undefined);
  }

  /** Our full set (with the leave announcement) to every gossip peer, for at most 2 s. */
  async broadcastFinal(): Promise<void> {
    const peers = this.peers();
    await raceTimeout(Promise.allSettled(peers.map((p) => this.exchange(p))), LEAVE_TIMEOUT_MS);
  }

  /** An exchange with every gossip peer carrying no announcement news (revocations ride along). */
  async pushRevocations(): Promise<void> {
    await Promise.allSettled(this.peers().map((p) => this.exchange(p, [])));
  }

  /** Sends our own (just re-signed) announcement to every gossip peer. */
  async pushOwn(): Promise<void> {
    const own = this.context.local.entries().map((e) => e.signed);
    await Promise.allSettled(this.peers().map((p) => this.exchange(p, own)));
  }

  /**
   * Connected members, plus gossip-capable peers we dialed ourselves (invite, mDNS). A
   * stranger that dials us is not sent ours unasked.
   */
  peers(): PeerId[] {
    return this.components.connectionManager
      .getConnections()
      .map((c) => c.remotePeer)
      .filter((peer, i, all) => all.findIndex((p) => p.equals(peer)) === i)
      .filter((peer) => this.shouldGossipWith(peer));
  }

  private shouldGossipWith(peer: PeerId): boolean {
    const id = endpointIdFromPeerId(peer);
    if (id !== undefined && this.context.table.get(id) !== undefined) return true;
    if (!this.capable.has(peer.toString())) return false;
    return this.components.connectionManager.getConnections(peer).some((c) => c.direction === 'outbound');
  }

  private async onStream(stream: Stream, connection: Connection): Promise<void> {
    const remote = endpointIdFromPeerId(connection.remotePeer);
    if (remote === undefined) {
      stream.abort(new Error('peer identity is not Ed25519'));
      return;
    }
    try {
      await respondGossip(
        stream,
        async (theirs) => {
          const { table, membership } = this.context;
          if (table.get(remote) !== undefined) await this.context.ingestRevocations(theirs.revocations ?? []);
          await this.ingestAll(theirs.announcements, remote);
          // Only a member (its own announcement, with our mesh id, accepted) learns anything,
          // and only what it does not hold yet; a peer that proved it knows the mesh id (mDNS)
          // gets our own announcement, so that it can send its own.
          if (table.get(remote) !== undefined) {
            return {
              announcements: newsFor(this.fullEntries(), theirs.known),
              revocations: membership.revocations(),
            };
          }
          const proven =
            theirs.proof !== undefined &&
            checkMembershipProof(
              this.context.meshId(),
              endpointIdToBytes(remote),
              endpointIdToBytes(this.context.endpointId),
              theirs.proof,
            );
          return { announcements: proven ? this.context.local.entries().map((e) => e.signed) : [] };
        },
        { signal: timeoutSignal(this.context, GOSSIP_TIMEOUT_MS) },
      );
    } catch (err) {
      this.logFailure(remote, err);
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /**
   * One exchange with a connected peer: our full set (anti-entropy), or only `push` (news to
   * spread). Overlapping calls coalesce into one full rerun.
   */
  exchange(peerId: PeerId, push?: SignedAnnouncement[]): Promise<void> {
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
    const connections = this.components.connectionManager.getConnections(peerId);
    if (remote === undefined || connections.length === 0) return;
    let stream: Stream | undefined;
    try {
      const signal = timeoutSignal(this.context, GOSSIP_TIMEOUT_MS);
      const { membership } = this.context;
      const member = this.context.table.get(remote) !== undefined;
      // A peer not known as a member learns nothing secret: our announcement (it carries the
      // mesh id) goes only to an invite's peer; anyone else (mDNS) gets a proof instead.
      const invited = this.context.invited(peerId.toString());
      const own = this.context.local.entries().map((e) => e.signed);
      const ours = member ? (push ?? this.fullSet()) : invited ? own : [];
      const extras = member
        ? { revocations: membership.revocations() }
        : invited
          ? {}
          : {
              proof: membershipProof(
                this.context.meshId(),
                endpointIdToBytes(this.context.endpointId),
                endpointIdToBytes(remote),
              ),
            };
      // More than one message holds goes in several exchanges, one stream each.
      for (const batch of splitGossip(ours)) {
        const connection = await this.components.connectionManager.openConnection(peerId, { signal });
        stream = await connection.newStream(PROTOCOL_GOSSIP, { signal, runOnLimitedConnection: true });
        // What we hold goes along, so the reply carries only what is new to us.
        const theirs = await requestGossip(stream, batch, this.knownDigests(), { signal, ...extras });
        if (member) await this.context.ingestRevocations(theirs.revocations ?? []);
        await this.ingestAll(theirs.announcements, remote);
      }
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)));
      if (!this.stopping) this.logFailure(remote, err);
    }
  }

  private logFailure(remote: EndpointId, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    const malformed = error instanceof GossipError || isMalformedFrame(error);
    // Peer id and reason only: gossip content is never logged.
    this.context.log[malformed ? 'warn' : 'debug'](
      { peer: short(remote), reason: error.message },
      'gossip exchange failed',
    );
  }

  private fullSet(): SignedAnnouncement[] {
    return this.fullEntries().map((e) => e.signed);
  }

  private fullEntries(): GossipEntry[] {
    return [...this.context.local.entries(), ...this.context.table.relayEntries()];
  }

  /** Origin → newest seq we hold, ourselves included. */
  private knownDigests(): Map<EndpointId, bigint> {
    const known = this.context.table.knownDigests();
    for (const own of this.context.local.entries()) known.set(own.endpointId, own.seq);
    return known;
  }

  private async ingestAll(list: SignedAnnouncement[], from: EndpointId): Promise<void> {
    const { table, log } = this.context;
    let urgent = false;
    let deferred = 0;
    const inMessage = new Set<EndpointId>();
    // Refusals are counted and logged once per message: a hostile peer's 4,096 refused
    // announcements make one line, not 4,096.
    const rejected = new Map<string, number>();
    let firstRejected: EndpointId | undefined;
    for (const signed of list) {
      const result = await table.ingest(signed, from, inMessage);
      if (result.status === 'accepted') {
        if (result.changed) {
          urgent = true;
          this.news.add(result.record.endpointId);
        }
        if (result.isNew) {
          log.info(
            { peer: short(result.record.endpointId), via: short(from), transitive: result.record.transitive },
            'peer joined',
          );
        }
      } else if (result.status === 'left') {
        urgent = true;
        this.news.add(result.endpointId);
        log.info({ peer: short(result.endpointId) }, 'peer left');
      } else if (result.reason === 'rate_limited' || result.reason === 'table_full') {
        deferred++;
      } else if (result.reason !== 'stale_seq' && result.reason !== 'self') {
        rejected.set(result.reason, (rejected.get(result.reason) ?? 0) + 1);
        firstRejected ??= result.endpointId;
      }
    }
    if (rejected.size > 0) {
      log.warn(
        {
          from: short(from),
          origin: firstRejected ? short(firstRejected) : undefined,
          reasons: Object.fromEntries(rejected),
        },
        'announcements rejected',
      );
    }
    if (deferred > 0) log.debug({ from: short(from), deferred }, 'new origins deferred (gossip bounds)');
    // New peers, leaves and content changes spread at once; plain refreshes wait a heartbeat.
    if (urgent) this.schedulePush();
  }

  private schedulePush(): void {
    if (this.pushTimer !== undefined || this.stopping) return;
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined;
      if (this.stopping) return;
      // Only the announcements that changed: the heartbeat's full exchange repairs any miss.
      const push = this.context.table.relayEntries(this.news).map((e) => e.signed);
      this.news.clear();
      for (const peer of this.peers()) void this.exchange(peer, push);
    }, PUSH_DEBOUNCE_MS);
    this.pushTimer.unref();
  }

  private async tick(): Promise<void> {
    if (this.stopping) return;
    const { table, local, log, heartbeatMs } = this.context;
    try {
      await local.resign();
      const removed = table.sweep(heartbeatMs * 2.5);
      for (const id of removed) log.info({ peer: short(id) }, 'peer silent, removed');
      await Promise.allSettled(this.peers().map((p) => this.exchange(p)));
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'heartbeat failed');
    }
  }
}

export function meshGossip(context: MeshContext): (components: MeshComponents) => GossipService {
  return (components) => new GossipService(context, components);
}
