import type { Connection, Startable, Stream } from '@libp2p/interface';
import { byteStream } from '@libp2p/utils';
import { endpointIdFromPeerId } from '../identity.ts';
import { listen, type MeshComponents, type MeshContext, short, timeoutSignal } from './context.ts';

/** libp2p's ping protocol (every mesh node runs @libp2p/ping): one 32-byte echo. */
const PING_PROTOCOL = '/ipfs/ping/1.0.0';
const PING_BYTES = 32;
/** An older connection that does not echo a ping within this is closed. */
export const STALE_PROBE_MS = 3_000;

/**
 * A peer that opens a new connection while we still hold an older one may have moved (its NAT
 * renumbered, it restarted elsewhere): the older connection may be dead without anything having
 * closed it, and libp2p keeps using it (a relay puts circuits on a peer's first connection).
 * Each older connection is pinged at once and closed if it does not answer, instead of lingering
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
    const signal = timeoutSignal(this.context, STALE_PROBE_MS);
    let stream: Stream | undefined;
    try {
      stream = await connection.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true });
      const bytes = byteStream(stream);
      await bytes.write(crypto.getRandomValues(new Uint8Array(PING_BYTES)), { signal });
      await bytes.read({ bytes: PING_BYTES, signal });
      await stream.close({ signal });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      stream?.abort(error);
      // A peer without the ping protocol still answered the negotiation: it is alive.
      if (error.name === 'UnsupportedProtocolError' || stopSignal.aborted || connection.status !== 'open')
        return;
      const id = endpointIdFromPeerId(connection.remotePeer);
      log.info(
        { peer: id === undefined ? undefined : short(id), reason: error.message },
        'closing a dead older connection to a peer that reconnected',
      );
      connection.abort(error);
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
