import { create } from '@bufbuild/protobuf';
import {
  type PeerAnnouncement,
  type SignedAnnouncement,
  SignedAnnouncementSchema,
} from '../proto/gen/mesh_pb.js';
import {
  AnnouncementError,
  announcementContentChanged,
  decodeAnnouncement,
  encodeSignedAnnouncement,
  verifySignedAnnouncement,
} from './announcements.ts';
import type { GossipEntry } from './gossip.ts';
import { endpointIdFromBytes, peerIdFromEndpointId } from './identity.ts';
import { KeyedRateLimit } from './rate-limit.ts';
import type { EndpointId, PeerEvent, PeerRecord } from './types.ts';

/**
 * Gossip state bounds (issue #15). Everything a table holds fits in one gossip message with
 * room to spare (peers + remembered origins ≤ 2,048 digests, against 4,096 per message), so a
 * mesh that has seen any number of origins keeps exchanging.
 */
export const GOSSIP_BOUNDS = {
  /** Live peers held; past it the least recently seen unconnected one is evicted. */
  maxPeers: 1024,
  /** Sequence numbers remembered for origins no longer live (stale copies cannot resurrect them). */
  maxTombstones: 1024,
  /** Leave notices relayed at once. */
  maxLeaving: 256,
  /** Signed bytes of one announcement. */
  maxAnnouncementBytes: 64 * 1024,
  /** New origins accepted from one relaying peer: a burst, then a steady rate per second. */
  newOriginBurst: 256,
  newOriginsPerSecond: 4,
  /**
   * Signature checks of known origins' newer versions one relaying peer may cause: a burst,
   * then a steady rate (every origin re-signs once a heartbeat, so a thousand-node mesh needs
   * about 17 a second from one peer).
   */
  verifyBurst: 2048,
  verifiesPerSecond: 256,
} as const;

export interface PeerTableOptions {
  selfEndpointId: EndpointId;
  meshId: () => string;
  clock: () => number;
  isConnected: (endpointId: EndpointId) => boolean;
  /** How long a leaving announcement keeps being relayed after it arrived. */
  leaveRelayMs: number;
  /** Membership (docs/membership.md): why an origin is not admitted, if it is not. */
  admit?: (endpointId: EndpointId, announcement: PeerAnnouncement) => AnnouncementError['reason'] | undefined;
  /** Defaults: GOSSIP_BOUNDS. */
  maxPeers?: number;
  maxTombstones?: number;
  maxLeaving?: number;
  newOriginBurst?: number;
  newOriginsPerSecond?: number;
  verifyBurst?: number;
  verifiesPerSecond?: number;
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
  private readonly newOrigins: KeyedRateLimit;
  private readonly verifications: KeyedRateLimit;
  private readonly maxPeers: number;
  private readonly maxTombstones: number;
  private readonly maxLeaving: number;

  constructor(options: PeerTableOptions) {
    this.options = options;
    this.maxPeers = options.maxPeers ?? GOSSIP_BOUNDS.maxPeers;
    this.maxTombstones = options.maxTombstones ?? GOSSIP_BOUNDS.maxTombstones;
    this.maxLeaving = options.maxLeaving ?? GOSSIP_BOUNDS.maxLeaving;
    this.newOrigins = new KeyedRateLimit({
      burst: options.newOriginBurst ?? GOSSIP_BOUNDS.newOriginBurst,
      perSecond: options.newOriginsPerSecond ?? GOSSIP_BOUNDS.newOriginsPerSecond,
      maxKeys: this.maxPeers,
      clock: options.clock,
    });
    this.verifications = new KeyedRateLimit({
      burst: options.verifyBurst ?? GOSSIP_BOUNDS.verifyBurst,
      perSecond: options.verifiesPerSecond ?? GOSSIP_BOUNDS.verifiesPerSecond,
      maxKeys: this.maxPeers,
      clock: options.clock,
    });
  }

  /** How much state the table holds (status, bounds tests). */
  sizes(): { peers: number; remembered: number; leaving: number } {
    return { peers: this.records.size, remembered: this.lastSeq.size, leaving: this.leaving.size };
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

  /** Resolves true once `endpointId` is held (now or later), false after `ms` or on abort. */
  whenKnown(endpointId: EndpointId, ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.records.has(endpointId)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        off();
        signal.removeEventListener('abort', onAbort);
        resolve(ok);
      };
      const onAbort = () => finish(false);
      const off = this.onEvent((event) => {
        if (event.type === 'updated' && event.peer.endpointId === endpointId) finish(true);
      });
      const timer = setTimeout(() => finish(false), ms);
      signal.addEventListener('abort', onAbort);
    });
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

  /**
   * Verifies and applies one announcement. `from` is the peer that relayed it: each relaying
   * peer may introduce new origins only at a bounded rate (the rest are deferred: not
   * remembered, so the next exchange offers them again). `inMessage` holds the origins the
   * same gossip message already carried: one message applies at most one version of each, so
   * a member cannot make a node verify and apply thousands of versions of itself at once.
   */
  async ingest(
    signed: SignedAnnouncement,
    from?: EndpointId,
    inMessage?: Set<EndpointId>,
  ): Promise<IngestResult> {
    // Gossip repeats what a node already has many times over (every peer relays every
    // announcement): those copies are settled here without decoding or verifying anything.
    const known = this.knownCopy(signed);
    if (known !== undefined) return known;
    let verified: Awaited<ReturnType<typeof verifySignedAnnouncement>>;
    let claimed: EndpointId | undefined;
    try {
      if (signed.announcement.byteLength + signed.signature.byteLength > GOSSIP_BOUNDS.maxAnnouncementBytes) {
        return { status: 'rejected', reason: 'too_large' };
      }
      const decoded = decodeAnnouncement(signed);
      claimed = endpointIdFromBytes(decoded.endpointId);
      const reason = this.precheck(decoded, claimed);
      if (reason !== undefined) return { status: 'rejected', reason, endpointId: claimed };
      if (inMessage?.has(claimed))
        return { status: 'rejected', reason: 'duplicate_origin', endpointId: claimed };
      inMessage?.add(claimed);
      // Spent before the signature check, so a flood of bad signatures is bounded too: new
      // origins from one budget, newer versions of known ones from another.
      const budget = this.lastSeq.has(claimed) ? this.verifications : this.newOrigins;
      if (from !== undefined && !budget.take(from)) {
        return { status: 'rejected', reason: 'rate_limited', endpointId: claimed };
      }
      verified = await verifySignedAnnouncement(signed, decoded);
    } catch (err) {
      if (err instanceof AnnouncementError)
        return { status: 'rejected', reason: err.reason, endpointId: claimed };
      throw err;
    }
    const { seq, announcement, endpointId } = verified;
    const refused = this.options.admit?.(endpointId, announcement);
    if (refused !== undefined) return { status: 'rejected', reason: refused, endpointId };
    // Re-check after the await: a newer copy may have been accepted meanwhile.
    const last = this.lastSeq.get(endpointId);
    if (last !== undefined && seq <= last) {
      return { status: 'rejected', reason: 'stale_seq', endpointId };
    }
    const previous = this.records.get(endpointId);
    if (previous === undefined && !announcement.leaving && !this.makeRoom()) {
      return { status: 'rejected', reason: 'table_full', endpointId };
    }
    this.rememberSeq(endpointId, seq);
    // Own copies: the decoded message may be a view into a large gossip frame.
    signed = create(SignedAnnouncementSchema, {
      announcement: signed.announcement.slice(),
      signature: signed.signature.slice(),
    });
    if (announcement.leaving) {
      this.leaving.delete(endpointId);
      this.leaving.set(endpointId, {
        signed,
        seq,
        untilMs: this.options.clock() + this.options.leaveRelayMs,
      });
      // Oldest notices first: they have been relayed the longest.
      for (const id of this.leaving.keys()) {
        if (this.leaving.size <= this.maxLeaving) break;
        this.leaving.delete(id);
      }
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

  /**
   * Room for one more live peer: evicts the least recently seen peer we hold no connection to
   * (it comes back with its next announcement if it is still there). False when every held
   * peer is connected.
   */
  private makeRoom(): boolean {
    if (this.records.size < this.maxPeers) return true;
    let stalest: PeerRecord | undefined;
    for (const record of this.records.values()) {
      if (record.connected) continue;
      if (stalest === undefined || record.lastSeenMs < stalest.lastSeenMs) stalest = record;
    }
    if (stalest === undefined) return false;
    this.records.delete(stalest.endpointId);
    this.signed.delete(stalest.endpointId);
    this.emit({ type: 'removed', endpointId: stalest.endpointId, reason: 'evicted' });
    return true;
  }

  private rememberSeq(endpointId: EndpointId, seq: bigint): void {
    this.lastSeq.delete(endpointId);
    this.lastSeq.set(endpointId, seq);
    // Evict the least recently advanced origins that are no longer live peers.
    const max = this.maxPeers + this.maxTombstones;
    if (this.lastSeq.size > max) {
      for (const id of this.lastSeq.keys()) {
        if (this.lastSeq.size <= max) break;
        if (!this.records.has(id)) {
          this.lastSeq.delete(id);
          this.leaving.delete(id);
        }
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

  /** Drops one origin now (revoked): its record, relayed copies and leave notice. */
  forget(endpointId: EndpointId): void {
    this.leaving.delete(endpointId);
    if (this.records.delete(endpointId)) {
      this.signed.delete(endpointId);
      this.emit({ type: 'removed', endpointId, reason: 'left' });
    }
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
