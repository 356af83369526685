import { networkInterfaces } from 'node:os';
import type { Startable } from '@libp2p/interface';
import type { AddressManager } from '@libp2p/interface-internal';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { bridgeInterfaceIps, classify } from '../address-policy.ts';
import { listen, type MeshComponents, type MeshContext } from './context.ts';

/** A year: our own interface's address does not need re-confirming while we listen on it. */
const OWN_ADDRESS_TTL_MS = 365 * 24 * 3_600_000;

export interface ReachabilityInit {
  /** Addresses the operator announced (--announce): they need no confirmation. */
  announced: number;
}

/**
 * What others can dial. libp2p keeps a public listen address unconfirmed until AutoNAT (which
 * needs four peers to agree) confirms it, so a relay on a VPS advertised only 127.0.0.1. An
 * address of this host's own interface that is public needs no outside opinion: it is
 * confirmed here. What peers observe is not: our dials leave from other ports than the
 * listeners' (@libp2p/tcp, and @chainsafe/libp2p-quic's separate client endpoint), so an
 * observed address is a NAT mapping of a dialling socket, and nothing answers there. Also
 * says, in words, what is missing when nobody outside could dial us.
 */
export class ReachabilityService implements Startable {
  private readonly context: MeshContext;
  private readonly init: ReachabilityInit;
  private readonly components: MeshComponents & { addressManager: AddressManager };
  private detach: (() => void) | undefined;

  constructor(
    context: MeshContext,
    init: ReachabilityInit,
    components: MeshComponents & { addressManager: AddressManager },
  ) {
    this.context = context;
    this.init = init;
    this.components = components;
  }

  start(): void {
    const { components, context } = this;
    this.detach = listen(components, context.log, 'transport:listening', () => this.confirmOwn());
  }

  afterStart(): void {
    this.confirmOwn();
  }

  stop(): void {
    this.detach?.();
  }

  /** Confirms the public addresses of our own interfaces (the listeners' expanded addresses). */
  private confirmOwn(): void {
    const bridges = bridgeInterfaceIps();
    for (const ma of this.components.transportManager.getAddrs().flatMap(expandWildcard)) {
      if (classify(ma, bridges) !== 'public') continue;
      this.components.addressManager.confirmObservedAddr(ma, { ttl: OWN_ADDRESS_TTL_MS });
    }
  }

  /**
   * Why a node elsewhere could not reach us with the advertised addresses, if it could not;
   * undefined when a public or relay address is advertised.
   */
  problem(addresses: readonly Multiaddr[], listenPort: number | undefined): string | undefined {
    const bridges = bridgeInterfaceIps();
    const advertised = addresses.map((ma) => classify(ma, bridges));
    if (advertised.includes('public') || advertised.includes('relay') || this.init.announced > 0)
      return undefined;
    const port = listenPort === undefined ? 'the mesh port' : `port ${listenPort} (TCP and UDP)`;
    const fix = `pass --announce HOST:PORT with the public address that reaches ${port}, or join a mesh that has a --relay node`;
    if (advertised.length === 0) return `this node has no address another node could dial yet: ${fix}`;
    if (advertised.every((c) => c === 'loopback')) {
      return `this node listens on loopback only: only this machine can join (use --bind-host 0.0.0.0, and ${fix})`;
    }
    return `this node advertises LAN addresses only: nodes outside this network cannot join; ${fix}`;
  }
}

export function meshReachability(
  context: MeshContext,
  init: ReachabilityInit,
): (components: MeshComponents & { addressManager: AddressManager }) => ReachabilityService {
  return (components) => new ReachabilityService(context, init, components);
}

/** A listener on 0.0.0.0 or :: as one address per interface address of that family. */
function expandWildcard(ma: Multiaddr): Multiaddr[] {
  const [first, ...rest] = ma.getComponents();
  const wildcard = first?.value === '0.0.0.0' || first?.value === '::';
  if (first === undefined || !wildcard) return [ma];
  const family = first.name === 'ip6' ? 'IPv6' : 'IPv4';
  const tail = rest.map((c) => `/${c.name}${c.value === undefined ? '' : `/${c.value}`}`).join('');
  return Object.values(networkInterfaces())
    .flatMap((addrs) => addrs ?? [])
    .filter((a) => a.family === family)
    .map((a) => multiaddr(`/${first.name}/${a.address}${tail}`));
}
