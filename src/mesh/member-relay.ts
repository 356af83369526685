import { circuitRelayServer } from '@libp2p/circuit-relay-v2';
import type { PeerId } from '@libp2p/interface';
import { endpointIdFromPeerId, peerIdFromEndpointId } from './identity.ts';
import type { PeerTable } from './peer-table.ts';

/**
 * A circuit relay that serves the mesh's members (issue #15 finding 4). Members' reservations
 * carry no limit (a long streamed answer is not cut) and a member always gets one; anyone else
 * gets libp2p's default limits (128 KiB and 2 minutes per circuit) and at most half the slots.
 * Membership comes from the peer table, through `attach`.
 */
export const RELAY_BOUNDS = {
  /** Reservations held at once. */
  slots: 256,
  /** The share of them strangers may hold. */
  strangerShare: 0.5,
  /** How long a reservation request from an unknown peer waits for its announcement (libp2p clients give up after 5 s). */
  memberWaitMs: 2_000,
} as const;

export interface RelayMembership {
  isMember(peer: PeerId): boolean;
  /** Resolves once `peer` is a member (true) or after `ms` (false). */
  awaitMember(peer: PeerId, ms: number): Promise<boolean>;
  /** Calls back whenever a peer joins (true) or leaves (false) the mesh. */
  onChange(listener: (peer: PeerId, member: boolean) => void): () => void;
}

interface Reservation {
  limit?: { data?: bigint; duration?: number };
  signal: AbortSignal & { clear?: () => void };
}

/** The subset of libp2p's ReservationStore this policy drives (a private field of the server). */
interface ReservationStore {
  reservations: Map<PeerId, Reservation> & { keys(): IterableIterator<PeerId> };
  maxReservations: number;
  defaultDataLimit: bigint;
  defaultDurationLimit: number;
  reserve(peer: PeerId, addr: unknown, limit?: unknown): { status: string; expire?: number };
}

// libp2p's Status enum (pb) is not exported; its values are these strings.
const RESERVATION_REFUSED = 'RESERVATION_REFUSED';

export class MemberRelayPolicy {
  private membership: RelayMembership | undefined;
  private store: ReservationStore | undefined;
  private readonly slots: number;

  constructor(slots: number = RELAY_BOUNDS.slots) {
    this.slots = slots;
  }

  /** The libp2p service factory: circuitRelayServer with the member-first reservation store. */
  service(streamLimit: number) {
    const factory = circuitRelayServer({
      reservations: { maxReservations: this.slots, applyDefaultLimit: true },
      maxInboundHopStreams: streamLimit,
      maxOutboundStopStreams: streamLimit,
    });
    return (components: Parameters<typeof factory>[0]) => {
      const server = factory(components);
      this.wrap((server as unknown as { reservationStore: ReservationStore }).reservationStore);
      return server;
    };
  }

  /**
   * For libp2p's connectionGater.denyInboundRelayReservation: never denies, but holds an
   * unknown peer's request until its announcement arrives, so a member is known as one.
   */
  async holdReservation(peer: PeerId): Promise<false> {
    if (this.membership !== undefined && !this.membership.isMember(peer)) {
      await this.membership.awaitMember(peer, RELAY_BOUNDS.memberWaitMs);
    }
    return false;
  }

  attach(membership: RelayMembership): () => void {
    this.membership = membership;
    return membership.onChange((peer, member) => {
      const reservation = this.store?.reservations.get(peer);
      if (reservation !== undefined) this.setLimit(reservation, member);
    });
  }

  private wrap(store: ReservationStore): void {
    this.store = store;
    const reserve = store.reserve.bind(store);
    store.reserve = (peer, addr, limit) => {
      const member = this.membership?.isMember(peer) === true;
      const held = store.reservations.has(peer);
      if (!held) {
        const strangers = [...store.reservations.keys()].filter((p) => this.membership?.isMember(p) !== true);
        if (member && store.reservations.size >= store.maxReservations) {
          // Full: a member takes a stranger's slot.
          const victim = strangers[0];
          if (victim !== undefined) this.drop(store, victim);
        } else if (
          !member &&
          strangers.length >= Math.floor(store.maxReservations * RELAY_BOUNDS.strangerShare)
        ) {
          return { status: RESERVATION_REFUSED };
        }
      }
      const result = reserve(peer, addr, limit);
      const reservation = store.reservations.get(peer);
      if (reservation !== undefined) this.setLimit(reservation, member);
      return result;
    };
  }

  private setLimit(reservation: Reservation, member: boolean): void {
    const store = this.store;
    if (store === undefined) return;
    reservation.limit = member
      ? undefined
      : { data: store.defaultDataLimit, duration: store.defaultDurationLimit };
  }

  private drop(store: ReservationStore, peer: PeerId): void {
    // Its expiry timer must not later delete a fresh reservation of the same peer.
    store.reservations.get(peer)?.signal.clear?.();
    store.reservations.delete(peer);
  }
}

/** Membership as the peer table sees it: a peer whose verified announcement it holds. */
export function tableMembership(table: PeerTable, signal: AbortSignal): RelayMembership {
  const idOf = (peer: PeerId) => endpointIdFromPeerId(peer);
  return {
    isMember: (peer) => {
      const id = idOf(peer);
      return id !== undefined && table.get(id) !== undefined;
    },
    awaitMember: async (peer, ms) => {
      const id = idOf(peer);
      return id !== undefined && table.whenKnown(id, ms, signal);
    },
    onChange: (listener) =>
      table.onEvent((event) => {
        if (event.type === 'updated') listener(peerIdFromEndpointId(event.peer.endpointId), true);
        else listener(peerIdFromEndpointId(event.endpointId), false);
      }),
  };
}
