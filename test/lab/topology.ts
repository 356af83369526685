/**
 * The network-namespace lab: real network boundaries on one machine.
 *
 *                  ┌───────── inet (router; drops RFC 1918 / CGNAT destinations) ─────────┐
 *                  │ 7.0.1.1     11.0.2.1       21.0.3.1        22.0.4.1        23.0.5.1     │
 *                  └──┬────────────┬──────────────┬───────────────┬───────────────┬──────────┘
 *           relay 7.0.1.2  pub 11.0.2.2   natA wan 21.0.3.2 natB wan 22.0.4.2 natC wan 23.0.5.2
 *                                         (MASQUERADE)      (MASQUERADE)      (MASQUERADE --random-fully:
 *                                         lan 192.168.1.1   lan 192.168.2.1    symmetric) lan 192.168.3.1
 *                                      hostA 192.168.1.10  clientB 192.168.2.10   hostC 192.168.3.10
 *                 + docker0 172.17.0.1, wg0 10.8.0.2, virbr0 192.168.122.1 (lead nowhere)
 *   and home D like home B: natD wan 24.0.6.2 (gateway 24.0.6.1), lan 192.168.4.1, clientD 192.168.4.10
 *
 *   lan  (a switch): lanA 10.10.0.2, lanB 10.10.0.3, lanC 10.10.0.4, lanD 10.10.0.5
 *   lan6 (a switch, IPv6 only): v6A fd00:6::2, v6B fd00:6::3
 *
 * The public side stands in for the internet with ranges libp2p does not treat as private (it
 * treats the documentation ranges and RFC 1918 as private, and DCUtR, AutoNAT and its
 * public-address logic act only on public ones). Each public site sits in a different /8
 * because AutoNAT (v1 and v2) confirms an address only after dial-backs from 4 peers in 4
 * different first octets. These ranges exist only inside the lab's namespaces: none has a link
 * to the root namespace or to a real interface, so no packet can leave the machine.
 *
 * Namespace names are `mlab-<pid>-<role>`; `destroy()` removes them with every process in them,
 * and `sweepStaleLabs()` (run by `Lab.create`) removes those of earlier runs that crashed.
 */
import { mkdir, rm } from 'node:fs/promises';
import {
  destroyNamespace,
  destroyNamespaceSync,
  inNs,
  ip,
  LAB_PREFIX,
  labSocketDir,
  sweepStaleLabs,
} from './netns.ts';

export const ADDR = {
  inet: {
    relay: '7.0.1.1',
    pub: '11.0.2.1',
    natA: '21.0.3.1',
    natB: '22.0.4.1',
    natC: '23.0.5.1',
    natD: '24.0.6.1',
  },
  relay: '7.0.1.2',
  pub: '11.0.2.2',
  natA: { wan: '21.0.3.2', renumbered: '21.0.3.3', lan: '192.168.1.1' },
  natB: { wan: '22.0.4.2', lan: '192.168.2.1' },
  natC: { wan: '23.0.5.2', lan: '192.168.3.1' },
  natD: { wan: '24.0.6.2', lan: '192.168.4.1' },
  hostA: '192.168.1.10',
  /** Interfaces of hostA that lead nowhere anyone else can reach (a container bridge, a VPN, a VM bridge). */
  hostAExtra: { docker0: '172.17.0.1/16', wg0: '10.8.0.2/24', virbr0: '192.168.122.1/24' },
  clientB: '192.168.2.10',
  hostC: '192.168.3.10',
  /** A newcomer in a fourth home, joining with a token printed by hostA. */
  clientD: '192.168.4.10',
  lanA: '10.10.0.2',
  lanB: '10.10.0.3',
  lanC: '10.10.0.4',
  lanD: '10.10.0.5',
  v6A: 'fd00:6::2',
  v6B: 'fd00:6::3',
} as const;

/** Destinations the "internet" router drops, as the real one does. */
const NON_ROUTABLE = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'];

const INTERNET_ROLES = [
  'inet',
  'relay',
  'pub',
  'natA',
  'hostA',
  'natB',
  'clientB',
  'natC',
  'hostC',
  'natD',
  'clientD',
] as const;
export type InternetRole = (typeof INTERNET_ROLES)[number];
const LAN_MACHINES = ['lanA', 'lanB', 'lanC', 'lanD'] as const;
export type LanRole = 'lan' | (typeof LAN_MACHINES)[number];
export type Lan6Role = 'lan6' | 'v6A' | 'v6B';
export type LabRole = InternetRole | LanRole | Lan6Role;

export interface LabParts {
  /** relay, public host, four homes behind NAT (one symmetric). */
  internet?: boolean;
  /** A plain IPv4 LAN with four machines. */
  lan?: boolean;
  /** An IPv6-only LAN with two machines. */
  lan6?: boolean;
}

export class Lab {
  readonly pid = process.pid;
  readonly socketDir = labSocketDir(process.pid);
  readonly #namespaces = new Set<string>();
  #destroyed = false;

  ns(role: LabRole): string {
    const name = `${LAB_PREFIX}-${this.pid}-${role}`;
    if (!this.#namespaces.has(name)) throw new Error(`the lab has no namespace ${role}`);
    return name;
  }

  async addNamespace(role: LabRole): Promise<string> {
    const name = `${LAB_PREFIX}-${this.pid}-${role}`;
    this.#namespaces.add(name);
    await ip(['netns', 'add', name]);
    await ip(['-n', name, 'link', 'set', 'lo', 'up']);
    // A fresh namespace already has forwarding off and accepts nothing unusual; IPv6 addresses
    // skip duplicate detection so they are usable at once.
    await inNs(name, 'sysctl', [
      '-qw',
      'net.ipv6.conf.all.accept_dad=0',
      'net.ipv6.conf.default.accept_dad=0',
    ]);
    return name;
  }

  /** A cable between two namespaces: a veth pair created inside `a`, its peer moved straight into `b`. */
  async link(a: LabRole, aIf: string, aCidr: string | undefined, b: LabRole, bIf: string, bCidr?: string) {
    await ip(`-n ${this.ns(a)} link add ${aIf} type veth peer name ${bIf} netns ${this.ns(b)}`);
    await this.up(a, aIf, aCidr);
    await this.up(b, bIf, bCidr);
  }

  /** An interface that leads nowhere: a veth pair with both ends in `role` (its peer has no address). */
  async deadEnd(role: LabRole, name: string, cidr: string): Promise<void> {
    await ip(`-n ${this.ns(role)} link add ${name} type veth peer name ${name}p`);
    await this.up(role, `${name}p`);
    await this.up(role, name, cidr);
  }

  async up(role: LabRole, ifName: string, cidr?: string): Promise<void> {
    if (cidr !== undefined) await ip(['-n', this.ns(role), 'addr', 'add', cidr, 'dev', ifName]);
    await ip(['-n', this.ns(role), 'link', 'set', ifName, 'up']);
  }

  async defaultRoute(role: LabRole, via: string): Promise<void> {
    await ip(['-n', this.ns(role), 'route', 'replace', 'default', 'via', via]);
  }

  async sysctl(role: LabRole, setting: string): Promise<void> {
    await inNs(this.ns(role), 'sysctl', ['-qw', setting]);
  }

  /** `iptables RULE` inside `role` (a string is split at spaces). */
  async iptables(role: LabRole, rule: string): Promise<void> {
    await inNs(this.ns(role), 'iptables', ['-w', '5', ...rule.split(' ')]);
  }

  /** A switch: a bridge inside `role`, one port per machine; each machine gets its own cable. */
  async bridge(role: LabRole, name = 'br0'): Promise<void> {
    await ip(['-n', this.ns(role), 'link', 'add', name, 'type', 'bridge']);
    await this.up(role, name);
  }

  async plug(sw: LabRole, machine: LabRole, cidr: string, port: string): Promise<void> {
    await this.link(sw, port, undefined, machine, 'eth0', cidr);
    await ip(['-n', this.ns(sw), 'link', 'set', port, 'master', 'br0']);
  }

  /**
   * A home router: `wan` towards the internet, `lan` towards `inside`; source NAT for what
   * leaves, and nothing unsolicited comes in (to the router or through it).
   */
  async natRouter(
    router: LabRole,
    inside: LabRole,
    addrs: { wan: string; lan: string; gateway: string; inside: string },
    symmetric: boolean,
  ): Promise<void> {
    await this.link('inet', `to${router}`, `${addrs.gateway}/24`, router, 'wan', `${addrs.wan}/24`);
    await this.link(router, 'lan', `${addrs.lan}/24`, inside, 'eth0', `${addrs.inside}/24`);
    await this.defaultRoute(router, addrs.gateway);
    await this.defaultRoute(inside, addrs.lan);
    await this.sysctl(router, 'net.ipv4.ip_forward=1');
    // --random-fully picks a fresh source port per flow: a different mapping for every peer,
    // which is what makes a NAT "symmetric" and hole punching impossible through it.
    await this.iptables(
      router,
      `-t nat -A POSTROUTING -o wan -j MASQUERADE${symmetric ? ' --random-fully' : ''}`,
    );
    for (const chain of ['FORWARD', 'INPUT']) {
      await this.iptables(router, `-A ${chain} -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`);
      await this.iptables(router, `-A ${chain} -i wan -j DROP`);
    }
  }

  /** The ISP hands home A a new public address: every flow through its NAT dies silently. */
  async renumberHomeA(): Promise<void> {
    const ns = this.ns('natA');
    await ip(['-n', ns, 'addr', 'flush', 'dev', 'wan']);
    await ip(['-n', ns, 'addr', 'add', `${ADDR.natA.renumbered}/24`, 'dev', 'wan']);
    await this.defaultRoute('natA', ADDR.inet.natA);
    await inNs(ns, 'conntrack', ['-F']).catch(() => undefined);
  }

  async buildInternet(): Promise<void> {
    for (const role of INTERNET_ROLES) await this.addNamespace(role);
    await this.sysctl('inet', 'net.ipv4.ip_forward=1');
    for (const range of NON_ROUTABLE) await ip(['-n', this.ns('inet'), 'route', 'add', 'blackhole', range]);
    await this.link('inet', 'torelay', `${ADDR.inet.relay}/24`, 'relay', 'eth0', `${ADDR.relay}/24`);
    await this.defaultRoute('relay', ADDR.inet.relay);
    await this.link('inet', 'topub', `${ADDR.inet.pub}/24`, 'pub', 'eth0', `${ADDR.pub}/24`);
    await this.defaultRoute('pub', ADDR.inet.pub);
    const home = (
      nat: 'natA' | 'natB' | 'natC' | 'natD',
      inside: 'hostA' | 'clientB' | 'hostC' | 'clientD',
      symmetric: boolean,
    ) =>
      this.natRouter(
        nat,
        inside,
        { wan: ADDR[nat].wan, lan: ADDR[nat].lan, gateway: ADDR.inet[nat], inside: ADDR[inside] },
        symmetric,
      );
    await home('natA', 'hostA', false);
    await home('natB', 'clientB', false);
    await home('natC', 'hostC', true);
    await home('natD', 'clientD', false);
    for (const [name, cidr] of Object.entries(ADDR.hostAExtra)) await this.deadEnd('hostA', name, cidr);
  }

  async buildLan(): Promise<void> {
    await this.addNamespace('lan');
    await this.bridge('lan');
    for (const role of LAN_MACHINES) {
      await this.addNamespace(role);
      await this.plug('lan', role, `${ADDR[role]}/24`, `p${role}`);
      // No router on this LAN: multicast (mDNS) still needs a route out of eth0.
      await ip(['-n', this.ns(role), 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
    }
  }

  async buildLan6(): Promise<void> {
    for (const role of ['lan6', 'v6A', 'v6B'] as const) await this.addNamespace(role);
    await this.bridge('lan6');
    await this.plug('lan6', 'v6A', `${ADDR.v6A}/64`, 'pa');
    await this.plug('lan6', 'v6B', `${ADDR.v6B}/64`, 'pb');
  }

  /** Removes every namespace of this lab, the processes in them, and the socket directory. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    process.off('exit', this.#onExit);
    await Promise.all([...this.#namespaces].map((ns) => destroyNamespace(ns)));
    await rm(this.socketDir, { recursive: true, force: true });
  }

  /** Last resort when the test process exits without running its after-hooks. */
  readonly #onExit = () => {
    if (!this.#destroyed) for (const ns of this.#namespaces) destroyNamespaceSync(ns);
  };

  static async create(parts: LabParts): Promise<Lab> {
    await sweepStaleLabs();
    const lab = new Lab();
    process.on('exit', lab.#onExit);
    try {
      await mkdir(lab.socketDir, { recursive: true });
      if (parts.internet) await lab.buildInternet();
      if (parts.lan) await lab.buildLan();
      if (parts.lan6) await lab.buildLan6();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }
}
