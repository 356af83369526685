import type { Libp2p, Libp2pEvents, PeerStore } from '@libp2p/interface';
import type { ConnectionManager, Registrar, TransportManager } from '@libp2p/interface-internal';
import type { Logger } from '../../log.ts';
import type { OwnerSigned } from '../../proto/gen/mesh_pb.js';
import type { MeshIdentity } from '../identity.ts';
import type { LocalAnnouncement } from '../local-announcement.ts';
import type { MeshMembership } from '../membership.ts';
import type { PeerTable } from '../peer-table.ts';
import type { EndpointId } from '../types.ts';

/** The parts of libp2p's components the mesh services use (libp2p passes them in). */
export interface MeshComponents {
  registrar: Registrar;
  connectionManager: ConnectionManager;
  transportManager: TransportManager;
  peerStore: PeerStore;
  events: Pick<Libp2p, 'addEventListener' | 'removeEventListener'>;
}

/** State the mesh services share: built once by the facade, handed to each service's init. */
export interface MeshContext {
  readonly identity: MeshIdentity;
  readonly endpointId: EndpointId;
  readonly table: PeerTable;
  readonly local: LocalAnnouncement;
  readonly log: Logger;
  readonly heartbeatMs: number;
  readonly clock: () => number;
  /** Aborted when the node begins to stop (before libp2p stops). */
  readonly stopSignal: AbortSignal;
  /** Owner key, certificate and revocations (docs/membership.md). */
  readonly membership: MeshMembership;
  readonly meshId: () => string;
  /** Whether `peer` is an invite's peer (it may be sent our announcement before it is a member). */
  readonly invited: (peer: string) => boolean;
  /** Applies revocations received by gossip (verified, stored, enforced). */
  readonly ingestRevocations: (list: readonly OwnerSigned[]) => Promise<void>;
}

export type MeshEventName = keyof Libp2pEvents;

/**
 * Adds a libp2p event listener whose errors are logged instead of thrown; returns the remover.
 */
export function listen<K extends MeshEventName>(
  components: MeshComponents,
  log: Logger,
  type: K,
  handler: (evt: Libp2pEvents[K]) => void,
): () => void {
  const wrapped = (evt: Libp2pEvents[K]) => {
    try {
      handler(evt);
    } catch (err) {
      log.warn({ event: type, err: (err as Error).message }, 'mesh event handler failed');
    }
  };
  components.events.addEventListener(type, wrapped);
  return () => components.events.removeEventListener(type, wrapped);
}

/** A signal that fires after `ms` or when the node stops. */
export function timeoutSignal(context: MeshContext, ms: number): AbortSignal {
  return AbortSignal.any([AbortSignal.timeout(ms), context.stopSignal]);
}

export function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

/** The first 12 hex digits of an endpoint id: enough for logs, never a whole key. */
export function short(endpointId: EndpointId): string {
  return endpointId.slice(0, 12);
}

export async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** `promise`, or the signal's reason once it fires first. */
export function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
