import { RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2';
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { PeerLostError, UpstreamError } from '../../errors.ts';
import { DialGuard } from '../dial-guard.ts';
import { peerIdFromEndpointId } from '../identity.ts';
import type { EndpointId } from '../types.ts';
import { anySignal, listen, type MeshComponents, type MeshContext, short } from './context.ts';

/** Streams per protocol and connection, each way. */
export const STREAM_LIMIT = 1024;
/** A request's whole dial (every candidate, relays included) ends by then, whatever its own signal. */
export const DIAL_DEADLINE_MS = 5_000;
/**
 * A peer whose last connection closed moments ago (or that is lost) is most likely gone: it
 * gets this much, so a request meant for a crashed host fails (or fails over) within seconds.
 */
export const LOST_PEER_DIAL_MS = 2_000;
/** Direct addresses get this head start before relay circuits are dialled too. */
const RELAY_HEAD_START_MS = 250;
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
    const lost = existing === undefined && this.init.lostConnection(endpointId);
    const budgetMs = lost ? LOST_PEER_DIAL_MS : DIAL_DEADLINE_MS;
    const deadline = anySignal(signal, AbortSignal.timeout(budgetMs));
    const streamOptions = {
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
        // A connection that cannot open a stream is dead: a fresh dial may still work.
      }
    }
    if (record === undefined) {
      throw new UpstreamError(`cannot reach peer ${short(endpointId)}`, 'peer_unreachable', {
        cause: lastError,
      });
    }
    let answered = false;
    try {
      const connection = await this.dial(endpointId, peerId, record.announcement.listenAddrs, deadline);
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
    const open = this.components.connectionManager.getConnections(peerId).filter((c) => c.status === 'open');
    return open.find((c) => !isRelayed(c)) ?? open[0];
  }

  /**
   * Dials the peer's announced addresses (within their budgets, recently failing ones last)
   * and circuits through every relay we are connected to, in parallel: direct addresses
   * first, circuits RELAY_HEAD_START_MS later, so a peer with a reachable address of its own
   * is reached directly. The first connection wins; a relayed one that connects later is closed.
   */
  private async dial(
    endpointId: EndpointId,
    peerId: PeerId,
    announced: readonly string[],
    signal: AbortSignal,
  ): Promise<Connection> {
    const admitted = this.guard.admit(endpointId, peerId.toString(), announced);
    const direct = this.freshFirst(admitted.filter((ma) => !isCircuitAddr(ma)));
    const circuits = new Map<string, Multiaddr>();
    for (const ma of admitted) if (isCircuitAddr(ma)) circuits.set(ma.toString(), ma);
    for (const relay of this.relayPeers) {
      if (relay === peerId.toString()) continue;
      const ma = multiaddr(`/p2p/${relay}/p2p-circuit/p2p/${peerId.toString()}`);
      circuits.set(ma.toString(), ma);
    }
    if (direct.length === 0 && circuits.size === 0) {
      throw new UpstreamError(`no address of ${short(endpointId)} may be dialled now`, 'dial_limited');
    }
    signal.throwIfAborted();
    const { transportManager } = this.components;
    // Each attempt has a signal of its own that fires only to stop it: libp2p may keep a dial's
    // signal attached to the connection it made, so the winner's must never fire afterwards.
    const losers = new Set<AbortController>();
    return new Promise<Connection>((resolve, reject) => {
      const errors: unknown[] = [];
      let pending = 0;
      let launched = false;
      let settled = false;
      const settleIfDone = () => {
        if (settled || !launched || pending > 0) return;
        settled = true;
        signal.removeEventListener('abort', onDeadline);
        reject(new AggregateError(errors, 'every candidate address failed'));
      };
      // The deadline ends the dial at once: a transport that is slow to honour its abort (a
      // QUIC handshake, a relay's stop request) is left to settle on its own.
      const onDeadline = () => {
        if (settled) return;
        settled = true;
        for (const loser of losers) loser.abort(signal.reason);
        reject(new AggregateError(errors, 'no candidate address connected by the deadline'));
      };
      signal.addEventListener('abort', onDeadline, { once: true });
      const attempt = (ma: Multiaddr) => {
        pending++;
        const own = new AbortController();
        const stop = () => own.abort(signal.reason);
        signal.addEventListener('abort', stop, { once: true });
        losers.add(own);
        transportManager.dial(ma, { signal: own.signal }).then(
          (connection) => {
            pending--;
            signal.removeEventListener('abort', stop);
            losers.delete(own);
            if (!settled) {
              settled = true;
              signal.removeEventListener('abort', onDeadline);
              for (const loser of losers) loser.abort(new Error('another address connected first'));
              resolve(connection);
            } else if (isRelayed(connection)) {
              connection.close().catch((err: Error) => connection.abort(err));
            }
          },
          (err: unknown) => {
            pending--;
            signal.removeEventListener('abort', stop);
            losers.delete(own);
            errors.push(err);
            if (!own.signal.aborted) this.markFailed(ma);
            settleIfDone();
          },
        );
      };
      for (const ma of direct) attempt(ma);
      const launchCircuits = () => {
        if (!settled) for (const ma of circuits.values()) attempt(ma);
        launched = true;
        settleIfDone();
      };
      if (direct.length === 0 || circuits.size === 0) launchCircuits();
      else setTimeout(launchCircuits, RELAY_HEAD_START_MS).unref();
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

/** A circuit-relay connection (limited, or dialled through /p2p-circuit). */
export function isRelayed(connection: Pick<Connection, 'limits' | 'remoteAddr'>): boolean {
  return connection.limits !== undefined || connection.remoteAddr.toString().includes('/p2p-circuit');
}

function isCircuitAddr(ma: Multiaddr): boolean {
  return ma.getComponents().some((c) => c.name === 'p2p-circuit');
}
