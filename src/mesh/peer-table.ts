import { create } from '@bufbuild/protobuf';
import { type SignedAnnouncement, SignedAnnouncementSchema } from '../proto/gen/mesh_pb.js';
import {
  AnnouncementError,
  announcementContentChanged,
  decodeAnnouncement,
  encodeSignedAnnouncement,
  verifySignedAnnouncement,
} from './announcements.ts';
import type { GossipEntry } from './gossip.ts';
import { endpointIdFromBytes, peerIdFromEndpointId } from './identity.ts';
import type { EndpointId, PeerEvent, PeerRecord } from './types.ts';

export interface PeerTableOptions {
  selfEndpointId: EndpointId;
  meshId: () => string;
  clock: () => number;
  isConnected: (endpointId: EndpointId) => boolean;
  /** How long a leaving announcement keeps being relayed after it arrived. */
  leaveRelayMs: number;
  /** How many origins' last sequence numbers are remembered after removal. */
  maxTombstones?: number;
}

export type IngestResult =
  | { status: 'accepted'; record: PeerRecord; isNew: boolean; changed: boolean }
  | { status: 'left'; endpointId: EndpointId }
  | { status: 'rejected'; reason: AnnouncementError['reason']; endpointId?: EndpointId };

interface Leaving {
  signed: SignedAnnouncement;
  seq: bigint;
  untilMs: number;
}

/**
 * The verified view of the mesh: one record per origin built from its newest signed
 * announcement. Sequence numbers outlive removal (tombstones) so a stale copy still
 * circulating cannot resurrect a peer that left; a restarted peer has a higher seq.
 */
export class PeerTable {
  private readonly options: PeerTableOptions;
  private readonly records = new Map<EndpointId, PeerRecord>();
  private readonly signed = new Map<EndpointId, SignedAnnouncement>();
  private readonly lastSeq = new Map<EndpointId, bigint>();
  private readonly leaving = new Map<EndpointId, Leaving>();
  private readonly listeners = new Set<(event: PeerEvent) => void>();

  constructor(options: PeerTableOptions) {
    this.options = options;
  }

  onEvent(listener: (event: PeerEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: PeerEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure must not break gossip processing.
      }
    }
  }

  list(): PeerRecord[] {
    return [...this.records.values()];
  }

  get(endpointId: EndpointId): PeerRecord | undefined {
    return this.records.get(endpointId);
  }

  /**
   * Signed announcements to pass on (every live peer plus recent leave notices, or only the
   * origins in `only`), each with the origin and seq it was accepted under.
   */
  relayEntries(only?: ReadonlySet<EndpointId>): GossipEntry[] {
    const now = this.options.clock();
    const out: GossipEntry[] = [];
    for (const [endpointId, record] of this.records) {
      const signed = this.signed.get(endpointId);
      if (signed !== undefined && (only === undefined || only.has(endpointId))) {
        out.push({ endpointId, seq: record.seq, signed });
      }
    }
    for (const [endpointId, entry] of this.leaving) {
      if (entry.untilMs < now) this.leaving.delete(endpointId);
      else if (only === undefined || only.has(endpointId)) out.push({ endpointId, ...entry });
    }
    return out;
  }

  /** Origin → the newest seq seen (tombstones included), to tell peers what not to resend. */
  knownDigests(): Map<EndpointId, bigint> {
    return new Map(this.lastSeq);
  }

  async ingest(signed: SignedAnnouncement): Promise<IngestResult> {
    // Gossip repeats what a node already has many times over (every peer relays every
    // announcement): those copies are settled here without decoding or verifying anything.
    const known = this.knownCopy(signed);
    if (known !== undefined) return known;
    let verified: Awaited<ReturnType<typeof verifySignedAnnouncement>>;
    let claimed: EndpointId | undefined;
    try {
      const decoded = decodeAnnouncement(signed);
      claimed = endpointIdFromBytes(decoded.endpointId);
      const reason = this.precheck(decoded, claimed);
      if (reason !== undefined) return { status: 'rejected', reason, endpointId: claimed };
      verified = await verifySignedAnnouncement(signed, decoded);
    } catch (err) {
      if (err instanceof AnnouncementError)
        return { status: 'rejected', reason: err.reason, endpointId: claimed };
      throw err;
    }
    const { seq, announcement, endpointId } = verified;
    // Re-check after the await: a newer copy may have been accepted meanwhile.
    const last = this.lastSeq.get(endpointId);
    if (last !== undefined && seq <= last) {
      return { status: 'rejected', reason: 'stale_seq', endpointId };
    }
    this.rememberSeq(endpointId, seq);
    // Own copies: the decoded message may be a view into a large gossip frame.
    signed = create(SignedAnnouncementSchema, {
      announcement: signed.announcement.slice(),
      signature: signed.signature.slice(),
    });
    const previous = this.records.get(endpointId);
    if (announcement.leaving) {
      this.leaving.set(endpointId, {
        signed,
        seq,
        untilMs: this.options.clock() + this.options.leaveRelayMs,
      });
      if (previous !== undefined) {
        this.records.delete(endpointId);
        this.signed.delete(endpointId);
        this.emit({ type: 'removed', endpointId, reason: 'left' });
      }
      return { status: 'left', endpointId };
    }
    this.leaving.delete(endpointId);
    const connected = this.options.isConnected(endpointId);
    const record: PeerRecord = {
      endpointId,
      peerId: previous?.peerId ?? peerIdFromEndpointId(endpointId).toString(),
      announcement,
      signedBytes: encodeSignedAnnouncement(signed),
      seq,
      lastSeenMs: this.options.clock(),
      connected,
      transitive: !connected,
      rttMs: previous?.rttMs,
    };
    this.records.set(endpointId, record);
    this.signed.set(endpointId, signed);
    const changed = previous === undefined || announcementContentChanged(previous.announcement, announcement);
    this.emit({ type: 'updated', peer: record });
    return { status: 'accepted', record, isNew: previous === undefined, changed };
  }

  /**
   * Our own announcement, or a byte-identical copy of one already held, found without decoding:
   * protobuf encoders write field 1 (the 32-byte endpoint id) first, so the origin is read from
   * the prefix and the copy confirmed by comparing every byte. Anything else (another field
   * order, a new seq) takes the full path, so this only ever saves work.
   */
  private knownCopy(signed: SignedAnnouncement): IngestResult | undefined {
    const bytes = signed.announcement;
    if (bytes.byteLength < 34 || bytes[0] !== 0x0a || bytes[1] !== 0x20) return undefined;
    const endpointId = Buffer.from(bytes.buffer, bytes.byteOffset + 2, 32).toString('hex');
    if (endpointId === this.options.selfEndpointId) return { status: 'rejected', reason: 'self', endpointId };
    const held = this.signed.get(endpointId) ?? this.leaving.get(endpointId)?.signed;
    if (held === undefined || !Buffer.from(held.announcement).equals(bytes)) return undefined;
    return { status: 'rejected', reason: 'stale_seq', endpointId };
  }

  /** Why a decoded announcement is dropped before its signature is checked, if it is. */
  private precheck(
    announcement: ReturnType<typeof decodeAnnouncement>,
    endpointId: EndpointId,
  ): AnnouncementError['reason'] | undefined {
    if (endpointId === this.options.selfEndpointId) return 'self';
    if (announcement.meshId === '') return 'no_mesh_id';
    if (announcement.meshId !== this.options.meshId()) return 'other_mesh';
    const last = this.lastSeq.get(endpointId);
    if (last !== undefined && announcement.announcementSeq <= last) return 'stale_seq';
    return undefined;
  }

  private rememberSeq(endpointId: EndpointId, seq: bigint): void {
    this.lastSeq.delete(endpointId);
    this.lastSeq.set(endpointId, seq);
    const max = this.options.maxTombstones ?? 4096;
    // Evict the least recently advanced origins that are no longer live peers.
    if (this.lastSeq.size > max) {
      for (const id of this.lastSeq.keys()) {
        if (this.lastSeq.size <= max) break;
        if (!this.records.has(id)) this.lastSeq.delete(id);
      }
    }
  }

  /** Refreshes the connected/transitive flags; emits 'updated' when they changed. */
  setConnected(endpointId: EndpointId, connected: boolean): void {
    const record = this.records.get(endpointId);
    if (record === undefined || record.connected === connected) return;
    const next: PeerRecord = { ...record, connected, transitive: !connected };
    this.records.set(endpointId, next);
    this.emit({ type: 'updated', peer: next });
  }

  /** Records a round-trip time without an event (it changes every heartbeat). */
  setRtt(endpointId: EndpointId, rttMs: number): void {
    const record = this.records.get(endpointId);
    if (record !== undefined) this.records.set(endpointId, { ...record, rttMs });
  }

  /** Removes peers whose announcement has not advanced within `silentAfterMs`. */
  sweep(silentAfterMs: number): EndpointId[] {
    const now = this.options.clock();
    const removed: EndpointId[] = [];
    for (const [id, record] of this.records) {
      if (now - record.lastSeenMs > silentAfterMs) {
        this.records.delete(id);
        this.signed.delete(id);
        removed.push(id);
        this.emit({ type: 'removed', endpointId: id, reason: 'silent' });
      }
    }
    for (const [id, entry] of this.leaving) if (entry.untilMs < now) this.leaving.delete(id);
    return removed;
  }

  /** Forgets everything (mesh id changed): every live peer is reported as gone. */
  reset(): void {
    const ids = [...this.records.keys()];
    this.records.clear();
    this.signed.clear();
    this.lastSeq.clear();
    this.leaving.clear();
    for (const id of ids) this.emit({ type: 'removed', endpointId: id, reason: 'left' });
  }
}
