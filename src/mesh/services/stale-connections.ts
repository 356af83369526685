import type { Connection, Startable } from '@libp2p/interface';
import { endpointIdFromPeerId } from '../identity.ts';
import { listen, type MeshComponents, type MeshContext, short } from './context.ts';

/**
 * A protocol no node handles: the remote's "not supported" answer is the probe's echo, one
 * round trip, as libp2p's connection monitor also counts it. No handler, no stream limit shared
 * with the monitor's own pings (a second ping stream would trip libp2p's limit of one).
 */
const PROBE_PROTOCOL = '/mesh-llm/probe/1.0.0';
/** An older connection that does not answer within this is closed. */
export const STALE_PROBE_MS = 3_000;

/**
 * A peer that opens a new connection while we still hold an older one may have moved (its NAT
 * renumbered, it restarted elsewhere): the older connection may be dead without anything having
 * closed it, and libp2p keeps using it (a relay puts circuits on a peer's first connection).
 * Each older connection is probed at once and closed if it does not answer, instead of lingering
 * until the connection monitor's next ping times out.
 */
export class StaleConnectionService implements Startable {
  private readonly context: MeshContext;
  private readonly components: MeshComponents;
  private readonly probing = new Set<Connection>();
  private readonly detachers: Array<() => void> = [];

  constructor(context: MeshContext, components: MeshComponents) {
    this.context = context;
    this.components = components;
  }

  start(): void {
    this.detachers.push(
      listen(this.components, this.context.log, 'connection:open', (evt) => this.onOpen(evt.detail)),
    );
  }

  stop(): void {
    for (const detach of this.detachers.splice(0)) detach();
  }

  private onOpen(fresh: Connection): void {
    for (const older of this.components.connectionManager.getConnections(fresh.remotePeer)) {
      if (older === fresh || older.status !== 'open' || this.probing.has(older)) continue;
      if (older.timeline.open > fresh.timeline.open) continue;
      void this.probe(older);
    }
  }

  private async probe(connection: Connection): Promise<void> {
    const { log, stopSignal } = this.context;
    this.probing.add(connection);
    const timeout = AbortSignal.timeout(STALE_PROBE_MS);
    try {
      const stream = await connection.newStream(PROBE_PROTOCOL, {
        signal: AbortSignal.any([timeout, stopSignal]),
        runOnLimitedConnection: true,
      });
      stream.abort(new Error('probe answered'));
    } catch (err) {
      // Any answer (not supported, a stream limit) proves the connection alive; only silence
      // until the deadline condemns it.
      if (!timeout.aborted || stopSignal.aborted || connection.status !== 'open') return;
      const id = endpointIdFromPeerId(connection.remotePeer);
      log.info(
        { peer: id === undefined ? undefined : short(id) },
        'closing a dead older connection to a peer that reconnected',
      );
      connection.abort(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.probing.delete(connection);
    }
  }
}

export function meshStaleConnections(
  context: MeshContext,
): (components: MeshComponents) => StaleConnectionService {
  return (components) => new StaleConnectionService(context, components);
}
