import type { PeerAnnouncement } from '../proto/gen/mesh_pb.js';

/** libp2p protocol ids (SPEC §4). */
export const PROTOCOL_GOSSIP = '/mesh-llm/gossip/1.0.0';
export const PROTOCOL_HTTP = '/mesh-llm/http/1.0.0';
export const PROTOCOL_ATTEST = '/mesh-llm/attest/1.0.0';
/** App-level forwarding: a 32-byte target endpoint id, then the bytes of a PROTOCOL_HTTP stream. */
export const PROTOCOL_FORWARD = '/mesh-llm/forward/1.0.0';

/** Lower-case hex of the 32-byte Ed25519 public key (the libp2p identity). */
export type EndpointId = string;

/**
 * One bidirectional stream as plain bytes, independent of the libp2p stream API.
 * `write` honours backpressure; `closeWrite` half-closes; `abort` resets both ways.
 */
export interface ByteStream {
  /** How the bytes travel: a direct connection, a relay circuit, or app-level forwarding. */
  readonly path?: 'direct' | 'relay' | 'forwarded';
  readonly source: AsyncIterable<Uint8Array>;
  write(chunk: Uint8Array): Promise<void>;
  closeWrite(): Promise<void>;
  abort(error: Error): void;
}

/** What this node knows about another node, built from its latest verified announcement. */
export interface PeerRecord {
  endpointId: EndpointId;
  /** libp2p peer id string (base58/CID form) for dialing. */
  peerId: string;
  announcement: PeerAnnouncement;
  /** Exact signed bytes as received, relayed unchanged. */
  signedBytes: Uint8Array;
  seq: bigint;
  /** When a new announcement (higher seq) from this origin last arrived. */
  lastSeenMs: number;
  /** A direct libp2p connection exists right now. */
  connected: boolean;
  /** Learned through another peer's gossip, not from the origin directly. */
  transitive: boolean;
  rttMs?: number;
}

/** How this node reaches a peer right now (status pages). */
export interface PeerLink {
  /** `direct`: a connection of its own; `relayed`: a circuit through a relay; `transitive`: known through gossip only. */
  kind: 'direct' | 'relayed' | 'transitive';
  /** The remote address of the connection in use. */
  address: string | null;
  /** For `relayed`: the relay's endpoint id. */
  via: EndpointId | null;
}

export type PeerEvent =
  | { type: 'updated'; peer: PeerRecord }
  | { type: 'removed'; endpointId: EndpointId; reason: 'left' | 'silent' | 'evicted' };

export interface StreamTapEvent {
  protocol: string;
  direction: 'in' | 'out';
  remote: EndpointId;
  bytes: Uint8Array;
}

/** Mutable fields of the local announcement; the mesh adds identity, seq, addresses, time. */
export type LocalAnnouncementFields = Omit<
  Partial<PeerAnnouncement>,
  '$typeName' | '$unknown' | 'endpointId' | 'announcementSeq' | 'listenAddrs' | 'issuedAtMs'
>;

export interface MeshService {
  readonly endpointId: EndpointId;
  readonly peerId: string;
  readonly meshId: string;
  start(): Promise<void>;
  /** Graceful leave: announce `leaving`, then close. */
  stop(): Promise<void>;
  /** Multiaddrs (with /p2p/ suffix) this node can be dialed on, relay circuits included. */
  addresses(): string[];
  /** Token for `--join`: mesh id and dial addresses of this node. */
  inviteToken(options?: { expiresInMs?: number }): string;
  /** Owner only: revoke a member for good (docs/membership.md). */
  revoke(endpointId: EndpointId): Promise<void>;
  /** What stops nodes elsewhere from dialling this one, and how to fix it; undefined when nothing. */
  reachabilityProblem(): string | undefined;
  /** How this node reaches `endpointId` right now. */
  link(endpointId: EndpointId): PeerLink;
  /** Dial the members of an invite token (repeatable). */
  join(token: string): Promise<void>;
  peers(): PeerRecord[];
  peer(endpointId: EndpointId): PeerRecord | undefined;
  onPeerEvent(listener: (event: PeerEvent) => void): () => void;
  /** Re-sign (seq + 1) and gossip the local announcement with these fields merged in. */
  updateAnnouncement(fields: LocalAnnouncementFields): Promise<void>;
  /** Open a stream to a peer (direct, via relay circuit, whatever works). */
  openStream(
    endpointId: EndpointId,
    protocol: string,
    options?: { signal?: AbortSignal },
  ): Promise<ByteStream>;
  /** Open a PROTOCOL_HTTP stream to `target` carried by `via` (app-level forwarding). */
  openForwardedStream(
    via: EndpointId,
    target: EndpointId,
    options?: { signal?: AbortSignal },
  ): Promise<ByteStream>;
  handle(protocol: string, handler: (stream: ByteStream, remote: EndpointId) => void | Promise<void>): void;
}
