import type { Connection, PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Multiaddr } from '@multiformats/multiaddr';
import { endpointIdFromPeerId } from './identity.ts';
import { circuitRelayId, isRelayed, preferredConnection } from './race-dial.ts';
import type { PeerLink } from './types.ts';

/** A connection to a peer as status pages and tests see it. */
export interface ConnectionSummary {
  remoteAddr: string;
  limited: boolean;
  direction: string;
}

/** How a peer is reached over these connections to it: a direct one first, else a circuit. */
export function peerLink(connections: readonly Connection[]): PeerLink {
  const connection = preferredConnection(connections);
  if (connection === undefined) return { kind: 'transitive', address: null, via: null };
  const address = connection.remoteAddr.toString();
  if (!isRelayed(connection)) return { kind: 'direct', address, via: null };
  const relay = relayOf(connection.remoteAddr);
  return {
    kind: 'relayed',
    address,
    via: relay === undefined ? null : (endpointIdFromPeerId(relay) ?? null),
  };
}

export function summarize(connections: readonly Connection[]): ConnectionSummary[] {
  return connections.map((c) => ({
    remoteAddr: c.remoteAddr.toString(),
    limited: c.limits !== undefined,
    direction: c.direction,
  }));
}

/** The relay's peer id in a circuit address. */
function relayOf(address: Multiaddr): PeerId | undefined {
  const relay = circuitRelayId(address);
  if (relay === undefined) return undefined;
  try {
    return peerIdFromString(relay);
  } catch {
    return undefined;
  }
}
