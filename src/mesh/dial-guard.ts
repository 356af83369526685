import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { KeyedRateLimit } from './rate-limit.ts';
import type { EndpointId } from './types.ts';

/**
 * Dial budgets (issue #15). An announcement is signed by its origin, but the addresses in it
 * are only claims: 300 fake members announcing someone else's 127.0.0.1:P made nodes open
 * thousands of connections there. Every dial to a peer we are not connected to spends a token
 * of that peer and one of each address tried.
 */
export const DIAL_BOUNDS = {
  /** Dials to one transport address (IP and port; a relay circuit counts per target). */
  perAddressBurst: 6,
  perAddressPerSecond: 0.2,
  /** Dial attempts to one announced peer. */
  perPeerBurst: 8,
  perPeerPerSecond: 0.2,
  /** Addresses and peers remembered; the least recently used go first. */
  maxKeys: 4096,
} as const;

export class DialGuard {
  private readonly addresses: KeyedRateLimit;
  private readonly peers: KeyedRateLimit;

  constructor(clock: () => number) {
    const maxKeys = DIAL_BOUNDS.maxKeys;
    this.addresses = new KeyedRateLimit({
      burst: DIAL_BOUNDS.perAddressBurst,
      perSecond: DIAL_BOUNDS.perAddressPerSecond,
      maxKeys,
      clock,
    });
    this.peers = new KeyedRateLimit({
      burst: DIAL_BOUNDS.perPeerBurst,
      perSecond: DIAL_BOUNDS.perPeerPerSecond,
      maxKeys,
      clock,
    });
  }

  /**
   * The announced addresses of `peerId` that may be dialled now (each with its /p2p/ suffix),
   * spending their budgets; empty when the peer or every address is over budget.
   */
  admit(endpointId: EndpointId, peerId: string, announced: readonly string[]): Multiaddr[] {
    const candidates: Array<{ ma: Multiaddr; key: string }> = [];
    for (const text of announced) {
      try {
        const ma = multiaddr(text);
        const last = ma.getComponents().at(-1);
        if (last?.name !== 'p2p' || last.value !== peerId) continue;
        candidates.push({ ma, key: addressKey(text) });
      } catch {
        // An unparsable address is skipped; the rest may work.
      }
    }
    if (candidates.length === 0 || !this.peers.take(endpointId)) return [];
    return candidates.filter((c) => this.addresses.take(c.key)).map((c) => c.ma);
  }
}

/** Where a dial lands: the transport part of a direct address, or the whole circuit address. */
function addressKey(text: string): string {
  if (text.includes('/p2p-circuit')) return text;
  const cut = text.indexOf('/p2p/');
  return cut < 0 ? text : text.slice(0, cut);
}
