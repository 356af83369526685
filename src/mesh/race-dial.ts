import type { Connection } from '@libp2p/interface';
import type { TransportManager } from '@libp2p/interface-internal';
import type { Multiaddr } from '@multiformats/multiaddr';

/** Direct addresses get this head start before relay circuits are dialled too. */
export const RELAY_HEAD_START_MS = 250;
/** Non-TCP direct addresses (QUIC) wait this long for a TCP one (a loaded host takes 100s of ms). */
const OTHER_TRANSPORT_MS = 1_000;
/** The head start when the peer has a public address: a relay is the fallback, not a rival. */
export const PUBLIC_HEAD_START_MS = 2_000;

export interface RaceDialInit {
  transportManager: Pick<TransportManager, 'dial'>;
  /** Addresses of the peer itself, tried at once, all in parallel. */
  direct: readonly Multiaddr[];
  /** Relay circuits to the peer, tried after `headStartMs` or once every direct one failed. */
  circuits: readonly Multiaddr[];
  headStartMs: number;
  /** Ends every attempt still running (the winner's connection is not affected). */
  signal: AbortSignal;
  /** A direct address that failed on its own (not stopped because another one won). */
  onFailed?: (ma: Multiaddr) => void;
}

/** A circuit-relay connection (limited, or dialled through /p2p-circuit). */
export function isRelayed(connection: Pick<Connection, 'limits' | 'remoteAddr'>): boolean {
  return connection.limits !== undefined || connection.remoteAddr.toString().includes('/p2p-circuit');
}

/** The connection a stream should take among these: an open direct one, else an open relayed one. */
export function preferredConnection<C extends Pick<Connection, 'status' | 'limits' | 'remoteAddr'>>(
  connections: readonly C[],
): C | undefined {
  const open = connections.filter((c) => c.status === 'open');
  return open.find((c) => !isRelayed(c)) ?? open[0];
}

/** The relay's peer id in a circuit address (`…/p2p/RELAY/p2p-circuit/…`). */
export function circuitRelayId(ma: Multiaddr): string | undefined {
  const parts = ma.getComponents();
  const circuit = parts.findIndex((c) => c.name === 'p2p-circuit');
  const relay = circuit > 0 ? parts[circuit - 1] : undefined;
  return relay?.name === 'p2p' ? relay.value : undefined;
}

export function isCircuitAddr(ma: Multiaddr): boolean {
  return ma.getComponents().some((c) => c.name === 'p2p-circuit');
}

/**
 * Dials every candidate in parallel instead of libp2p's one address after another (each
 * unreachable address there costs a whole dial timeout): the first connection wins, in stages.
 * TCP addresses go first: a TCP connection learns at once that its peer died (the kernel
 * resets it), a QUIC one only when pings stop. Other direct addresses follow OTHER_TRANSPORT_MS
 * later, circuits `headStartMs` later; a stage starts at once when every attempt already
 * started has failed. When a circuit wins, the direct attempts still running go on, and a direct
 * connection that arrives later is kept (the next stream uses it); any other late one is closed.
 */
export function raceDial(init: RaceDialInit): Promise<Connection> {
  const { transportManager, signal } = init;
  const tcp = init.direct.filter(isTcp);
  const stages = [
    { addrs: tcp, direct: true, atMs: 0 },
    {
      addrs: init.direct.filter((ma) => !isTcp(ma)),
      direct: true,
      atMs: tcp.length > 0 ? OTHER_TRANSPORT_MS : 0,
    },
    { addrs: init.circuits, direct: false, atMs: init.direct.length > 0 ? init.headStartMs : 0 },
  ].filter((stage) => stage.addrs.length > 0);
  if (stages.length === 0) return Promise.reject(new Error('no address to dial'));
  // Each attempt has a signal of its own that fires only to stop it: libp2p may keep a dial's
  // signal attached to the connection it made, so the winner's must never fire afterwards.
  const running = new Map<AbortController, boolean>();
  const timers: NodeJS.Timeout[] = [];
  return new Promise<Connection>((resolve, reject) => {
    const errors: unknown[] = [];
    let pending = 0;
    let launched = 0;
    let winner: Connection | undefined;
    let failed = false;
    const launchNext = () => {
      const stage = stages[launched];
      if (stage === undefined || winner !== undefined) return;
      launched++;
      for (const ma of stage.addrs) attempt(ma, stage.direct);
    };
    const onAllFailed = () => {
      if (winner !== undefined || failed || pending > 0) return;
      if (launched < stages.length) return launchNext();
      failed = true;
      signal.removeEventListener('abort', onDeadline);
      for (const timer of timers) clearTimeout(timer);
      reject(new AggregateError(errors, 'every candidate address failed'));
    };
    const attempt = (ma: Multiaddr, isDirect: boolean) => {
      pending++;
      const own = new AbortController();
      const stop = () => own.abort(signal.reason);
      signal.addEventListener('abort', stop, { once: true });
      running.set(own, isDirect);
      const finish = () => {
        pending--;
        signal.removeEventListener('abort', stop);
        running.delete(own);
      };
      transportManager.dial(ma, { signal: own.signal }).then(
        (connection) => {
          finish();
          if (winner === undefined && !failed) {
            winner = connection;
            signal.removeEventListener('abort', onDeadline);
            for (const timer of timers) clearTimeout(timer);
            // A relayed winner leaves the direct attempts running: one may still connect.
            const keepDirect = isRelayed(connection);
            for (const [controller, direct] of running)
              if (!(keepDirect && direct)) controller.abort(new Error('another address connected first'));
            resolve(connection);
          } else if (!(winner !== undefined && isRelayed(winner) && !isRelayed(connection))) {
            connection.close().catch((err: Error) => connection.abort(err));
          }
        },
        (err: unknown) => {
          finish();
          errors.push(err);
          if (isDirect && !own.signal.aborted) init.onFailed?.(ma);
          onAllFailed();
        },
      );
    };
    // The deadline ends the race at once: a transport that is slow to honour its abort (a QUIC
    // handshake, a relay's stop request) is left to settle on its own.
    const onDeadline = () => {
      if (winner !== undefined || failed) return;
      failed = true;
      for (const timer of timers) clearTimeout(timer);
      for (const controller of running.keys()) controller.abort(signal.reason);
      reject(new AggregateError(errors, 'no candidate address connected by the deadline'));
    };
    if (signal.aborted) return onDeadline();
    signal.addEventListener('abort', onDeadline, { once: true });
    launchNext();
    for (let i = 1; i < stages.length; i++) {
      const timer = setTimeout(() => {
        while (launched <= i && winner === undefined && !failed) launchNext();
      }, stages[i]!.atMs);
      timer.unref();
      timers.push(timer);
    }
  });
}

function isTcp(ma: Multiaddr): boolean {
  return ma.getComponents().some((c) => c.name === 'tcp');
}
