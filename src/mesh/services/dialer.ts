import { RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2';
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { PeerLostError, UpstreamError } from '../../errors.ts';
import { isPublicAddress } from '../address-policy.ts';
import { DialGuard } from '../dial-guard.ts';
import { peerIdFromEndpointId } from '../identity.ts';
import {
  circuitRelayId,
  isCircuitAddr,
  isRelayed,
  PUBLIC_HEAD_START_MS,
  preferredConnection,
  RELAY_HEAD_START_MS,
  raceDial,
} from '../race-dial.ts';
import type { EndpointId } from '../types.ts';
import {
  anySignal,
  listen,
  type MeshComponents,
  type MeshContext,
  raceSignal,
  short,
  timeoutSignal,
} from './context.ts';

/** Streams per protocol and connection, each way. */
export const STREAM_LIMIT = 1024;
/** A request's whole dial (every candidate, relays included) ends by then, whatever its own signal. */
export const DIAL_DEADLINE_MS = 5_000;
/**
 * A peer whose last connection closed moments ago (or that is lost) is most likely gone: it
 * gets this much, so a request meant for a crashed host fails (or fails over) within seconds.
 */
export const LOST_PEER_DIAL_MS = 2_000;
/** An address whose dial failed is tried after the others for this long. */
const FAILED_ADDRESS_MS = 30_000;
const MAX_FAILED_ADDRESSES = 4096;

export interface OpenedStream {
  stream: Stream;
  path: 'direct' | 'relay';
}

export interface DialerInit {
  /** Whether the peer's last connection closed and has not come back (membership.ts). */
  lostConnection: (endpointId: EndpointId) => boolean;
}

/**
 * Opens outbound streams to members: over an existing connection, else by dialling the
 * addresses the peer announced (within their dial budgets), else through a circuit on each
 * relay we know.
 */
export class DialerService implements Startable {
  private readonly context: MeshContext;
  private readonly init: DialerInit;
  private readonly components: MeshComponents;
  /** Connected peers whose identify listed the circuit-relay hop protocol. */
  private readonly relayPeers = new Set<string>();
  private readonly detachers: Array<() => void> = [];
  private readonly guard: DialGuard;
  /** Address → until when it counts as failing. */
  private readonly failed = new Map<string, number>();
  /** Dials in flight, one per peer: concurrent requests share it (duplicate circuits get reset). */
  private readonly inFlight = new Map<EndpointId, Promise<Connection>>();

  constructor(context: MeshContext, init: DialerInit, components: MeshComponents) {
    this.context = context;
    this.init = init;
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

  /**
   * A new outbound stream to a member, within DIAL_DEADLINE_MS whatever the caller's own
   * signal allows: over an open connection at once (a direct one before a relayed one), else
   * over whichever candidate connects first, dialled in parallel. A connection that cannot
   * open a stream by the deadline is dead and is closed; a peer whose connection just died gets
   * only LOST_PEER_DIAL_MS and fails with PeerLostError.
   */
  async negotiate(endpointId: EndpointId, protocol: string, signal: AbortSignal): Promise<OpenedStream> {
    const peerId = peerIdFromEndpointId(endpointId);
    const record = this.context.table.get(endpointId);
    const existing = this.bestConnection(peerId);
    if (record === undefined && existing === undefined) {
      throw new UpstreamError(`peer ${short(endpointId)} is not known in this mesh`, 'peer_unknown');
    }
    let lost = existing === undefined && this.init.lostConnection(endpointId);
    let budgetMs = lost ? LOST_PEER_DIAL_MS : DIAL_DEADLINE_MS;
    let deadline = anySignal(signal, AbortSignal.timeout(budgetMs));
    let streamOptions = {
      signal: deadline,
      runOnLimitedConnection: true,
      maxOutboundStreams: STREAM_LIMIT,
    };
    let lastError: unknown;
    if (existing !== undefined) {
      try {
        const stream = await existing.newStream(protocol, streamOptions);
        return { stream, path: isRelayed(existing) ? 'relay' : 'direct' };
      } catch (err) {
        lastError = err;
        if (signal.aborted) throw new UpstreamError('stream open aborted', 'aborted', { cause: err });
        if (deadline.aborted) {
          // No stream in the whole deadline: the connection is dead though nothing closed it
          // yet (a NAT that renumbered, a relay leg gone silent). Closing it lets the next
          // request dial afresh and the peer table see the loss now.
          existing.abort(new Error('no stream within the dial deadline'));
          throw new UpstreamError(
            `cannot reach peer ${short(endpointId)} (its connection stopped answering)`,
            'peer_unreachable',
            { cause: err },
          );
        }
        // A connection that cannot open a stream is dead: a fresh dial may still work. When it
        // was the peer's last one (it closed as we used it: a crash), the peer counts as lost.
        if (existing.status !== 'open' && this.bestConnection(peerId) === undefined) {
          lost = true;
          budgetMs = LOST_PEER_DIAL_MS;
          deadline = anySignal(signal, AbortSignal.timeout(budgetMs));
          streamOptions = { ...streamOptions, signal: deadline };
        }
      }
    }
    if (record === undefined) {
      throw new UpstreamError(`cannot reach peer ${short(endpointId)}`, 'peer_unreachable', {
        cause: lastError,
      });
    }
    let answered = false;
    try {
      const connection = await this.dialOnce(
        endpointId,
        peerId,
        record.announcement.listenAddrs,
        budgetMs,
        deadline,
      );
      answered = true;
      const stream = await connection.newStream(protocol, streamOptions);
      return { stream, path: isRelayed(connection) ? 'relay' : 'direct' };
    } catch (err) {
      if (signal.aborted) throw new UpstreamError('stream open aborted', 'aborted', { cause: err });
      if (err instanceof UpstreamError && err.code !== 'peer_unreachable') throw err;
      const why = deadline.aborted ? `no connection within ${budgetMs / 1000} s` : 'every address failed';
      const message = `cannot reach peer ${short(endpointId)} (${why})`;
      // A peer that took the connection (and then closed it: a per-address connection limit) is
      // alive, and others may still reach it.
      if (lost && !answered)
        throw new PeerLostError(`${message}; its connection closed and has not come back`, { cause: err });
      throw new UpstreamError(message, 'peer_unreachable', { cause: err });
    }
  }

  /** An open connection to `peerId`: a direct one if there is one, else a relayed one. */
  private bestConnection(peerId: PeerId): Connection | undefined {
    return preferredConnection(this.components.connectionManager.getConnections(peerId));
  }

  /**
   * Joins the dial to this peer already in flight, or starts one. The shared dial has a
   * deadline of its own (one caller's cancellation must not fail the others); each caller
   * keeps its own.
   */
  private dialOnce(
    endpointId: EndpointId,
    peerId: PeerId,
    announced: readonly string[],
    budgetMs: number,
    signal: AbortSignal,
  ): Promise<Connection> {
    let dial = this.inFlight.get(endpointId);
    if (dial === undefined) {
      const shared = timeoutSignal(this.context, budgetMs);
      dial = this.dial(endpointId, peerId, announced, shared).finally(() => this.inFlight.delete(endpointId));
      this.inFlight.set(endpointId, dial);
    }
    return raceSignal(dial, signal);
  }

  /**
   * Dials the peer's announced addresses (within their budgets, recently failing ones last)
   * and circuits through every relay we are connected to, in parallel (race-dial.ts): direct
   * addresses first, circuits a head start later, a longer one when the peer has a public
   * address, so that such a peer is reached directly.
   */
  private async dial(
    endpointId: EndpointId,
    peerId: PeerId,
    announced: readonly string[],
    signal: AbortSignal,
  ): Promise<Connection> {
    const admitted = this.guard.admit(endpointId, peerId.toString(), announced);
    const direct = this.freshFirst(admitted.filter((ma) => !isCircuitAddr(ma)));
    // One circuit per relay: circuits through one relay share its connection, and each extra
    // one is an inbound connection the target counts against the relay's address (libp2p
    // refuses more than 5 a second from one address).
    const circuits = new Map<string, Multiaddr>();
    for (const relay of this.relayPeers) {
      if (relay === peerId.toString()) continue;
      circuits.set(relay, multiaddr(`/p2p/${relay}/p2p-circuit/p2p/${peerId.toString()}`));
    }
    for (const ma of admitted) {
      const relay = circuitRelayId(ma);
      if (relay !== undefined && !circuits.has(relay)) circuits.set(relay, ma);
    }
    if (direct.length === 0 && circuits.size === 0) {
      throw new UpstreamError(`no address of ${short(endpointId)} may be dialled now`, 'dial_limited');
    }
    signal.throwIfAborted();
    return raceDial({
      transportManager: this.components.transportManager,
      direct,
      circuits: [...circuits.values()],
      headStartMs: direct.some(isPublicAddress) ? PUBLIC_HEAD_START_MS : RELAY_HEAD_START_MS,
      signal,
      onFailed: (ma) => this.markFailed(ma),
    });
  }

  /** Addresses that failed within FAILED_ADDRESS_MS go last (they age out of that list). */
  private freshFirst(addrs: Multiaddr[]): Multiaddr[] {
    const now = this.context.clock();
    const failedAt = (ma: Multiaddr) => {
      const until = this.failed.get(ma.toString());
      return until !== undefined && until > now;
    };
    return [...addrs.filter((ma) => !failedAt(ma)), ...addrs.filter(failedAt)];
  }

  private markFailed(ma: Multiaddr): void {
    const now = this.context.clock();
    if (this.failed.size >= MAX_FAILED_ADDRESSES) {
      for (const [key, until] of this.failed) if (until <= now) this.failed.delete(key);
      if (this.failed.size >= MAX_FAILED_ADDRESSES) this.failed.delete(this.failed.keys().next().value!);
    }
    this.failed.set(ma.toString(), now + FAILED_ADDRESS_MS);
  }
}

export function meshDialer(
  context: MeshContext,
  init: DialerInit,
): (components: MeshComponents) => DialerService {
  return (components) => new DialerService(context, init, components);
}
