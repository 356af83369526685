import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { isLinkLocal, isLoopback, isPrivate } from '@libp2p/utils';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { ConfigError } from '../errors.ts';

/** Interfaces that are local by nature: container and VM bridges, veth pairs, CNI plugins. */
const LOCAL_INTERFACE = /^(docker\d*|veth|br-|virbr|cni|flannel|podman|lxcbr|lxdbr|vnet|cali|weave)/;
/** More addresses than this in an invite token or announcement only slows dialling down. */
export const MAX_ADVERTISED_ADDRS = 8;

export type AddressClass = 'public' | 'relay' | 'private' | 'loopback' | 'local-only';

export interface AddressPolicyInit {
  /** The node listens on loopback only: loopback is then all it can advertise. */
  loopbackOnly: boolean;
  /** IPs of container/VM bridge interfaces (read from the host when absent). */
  bridgeIps?: ReadonlySet<string>;
}

/** The IPs of this host's container and VM bridge interfaces. */
export function bridgeInterfaceIps(): Set<string> {
  const ips = new Set<string>();
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (!LOCAL_INTERFACE.test(name)) continue;
    for (const addr of addrs ?? []) ips.add(addr.address);
  }
  return ips;
}

function hostOf(ma: Multiaddr): string | undefined {
  const first = ma.getComponents()[0];
  return first?.name === 'ip4' || first?.name === 'ip6' ? first.value : undefined;
}

/** Where an address leads: what a node elsewhere could do with it. */
export function classify(ma: Multiaddr, bridgeIps: ReadonlySet<string>): AddressClass {
  if (ma.toString().includes('/p2p-circuit')) return 'relay';
  const host = hostOf(ma);
  if (host === undefined) return 'public'; // a DNS name the operator announced
  if (isLoopback(ma)) return 'loopback';
  if (isLinkLocal(ma) || bridgeIps.has(host)) return 'local-only';
  return isPrivate(ma) === true ? 'private' : 'public';
}

const NO_BRIDGES: ReadonlySet<string> = new Set();

/** Whether another node's address is public (bridges are only ever our own interfaces). */
export function isPublicAddress(ma: Multiaddr): boolean {
  return classify(ma, NO_BRIDGES) === 'public';
}

const RANK: Record<AddressClass, number> = { public: 0, relay: 1, private: 2, loopback: 3, 'local-only': 4 };

/**
 * libp2p's announceFilter: the addresses others can dial, public and relay ones before LAN
 * ones; loopback only from a node bound to loopback; link-local and container bridges never.
 */
export function announceFilter(init: AddressPolicyInit): (addrs: Multiaddr[]) => Multiaddr[] {
  const bridges = init.bridgeIps ?? bridgeInterfaceIps();
  return (addrs) => {
    const kept = addrs
      .map((ma, index) => ({ ma, index, cls: classify(ma, bridges) }))
      .filter(({ cls }) => cls !== 'local-only' && (cls !== 'loopback' || init.loopbackOnly))
      // Stable: within a class, libp2p's order.
      .sort((a, b) => RANK[a.cls] - RANK[b.cls] || a.index - b.index);
    return kept.slice(0, MAX_ADVERTISED_ADDRS).map(({ ma }) => ma);
  };
}

/**
 * An operator's `--announce` value as multiaddrs: a multiaddr is taken as is; `host:port`
 * (`[v6]:port`, a DNS name) becomes its TCP address, plus its QUIC one when QUIC is on.
 */
export function parseAnnounce(value: string, quic: boolean): Multiaddr[] {
  if (value.startsWith('/')) {
    try {
      return [multiaddr(value)];
    } catch {
      throw new ConfigError(`--announce: '${value}' is not a multiaddr`);
    }
  }
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`--announce takes host:port or a multiaddr, got '${value}'`);
  }
  const family = isIP(host);
  const base = family === 4 ? `/ip4/${host}` : family === 6 ? `/ip6/${host}` : `/dns/${host}`;
  const out = [multiaddr(`${base}/tcp/${port}`)];
  if (quic) out.push(multiaddr(`${base}/udp/${port}/quic-v1`));
  return out;
}

/**
 * The public addresses of this host's own interfaces that `listen` (the listen multiaddrs)
 * covers: advertised at once, since no outside opinion is needed to know them (libp2p would
 * wait for AutoNAT, which needs four peers, and a lone relay on a VPS advertised nothing).
 */
export function ownPublicAddrs(
  listen: readonly string[],
  bridgeIps: ReadonlySet<string> = bridgeInterfaceIps(),
): Multiaddr[] {
  const out: Multiaddr[] = [];
  const interfaces = Object.values(networkInterfaces()).flatMap((addrs) => addrs ?? []);
  for (const text of listen) {
    const ma = multiaddr(text);
    const [first, ...rest] = ma.getComponents();
    if (first === undefined || (first.name !== 'ip4' && first.name !== 'ip6')) continue;
    const tail = rest.map((c) => `/${c.name}${c.value === undefined ? '' : `/${c.value}`}`).join('');
    const hosts =
      first.value === '0.0.0.0' || first.value === '::'
        ? interfaces
            .filter((a) => a.family === (first.name === 'ip6' ? 'IPv6' : 'IPv4'))
            .map((a) => a.address)
        : [first.value ?? ''];
    for (const host of hosts) {
      const candidate = multiaddr(`/${first.name}/${host}${tail}`);
      if (classify(candidate, bridgeIps) === 'public') out.push(candidate);
    }
  }
  return out;
}
