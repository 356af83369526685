/**
 * The lab itself: isolated from the machine, NAT that translates and refuses unsolicited
 * inbound, an internet that drops private destinations, an IPv6 LAN, and cleanup.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { killGroup, nodeEnv, spawnInNs, waitForLine } from './lab-node.ts';
import { ip, LAB_PREFIX, labUnavailableReason, listNamespaces, sweepStaleLabs } from './netns.ts';
import { ADDR, Lab, type LabRole } from './topology.ts';

const PROBE = new URL('./probe.ts', import.meta.url).pathname;
const unavailable = await labUnavailableReason();
if (unavailable) console.log(`# ${unavailable}`);

describe('network-namespace lab wiring', { skip: unavailable }, () => {
  let lab: Lab;
  let rootLinksBefore: string;
  before(async () => {
    rootLinksBefore = await ip(['-br', 'link']);
    lab = await Lab.create({ internet: true, lan6: true });
  });
  after(() => lab?.destroy());

  const connectFrom = async (role: LabRole, host: string, port: number, ms = 1_500) => {
    const probe = spawnInNs(lab.ns(role), [PROBE, 'connect', host, String(port), String(ms)], nodeEnv());
    await probe.exited;
    return probe.output.text.trim();
  };
  const listenIn = async (role: LabRole, host: string, port: number) => {
    const server = spawnInNs(lab.ns(role), [PROBE, 'listen', host, String(port)], nodeEnv());
    await waitForLine(server, /^listening$/m, `probe listener in ${role}`);
    return server;
  };

  test('no interface in the root namespace; every cable ends in a lab namespace', async () => {
    assert.equal(await ip(['-br', 'link']), rootLinksBefore, 'the root namespace gained no link');
    for (const ns of await listNamespaces()) {
      if (!ns.startsWith(`${LAB_PREFIX}-${process.pid}-`)) continue;
      const links = JSON.parse(await ip(['-j', '-n', ns, 'link'])) as {
        ifname: string;
        link_netnsid?: number;
      }[];
      const ids = await ip(['-n', ns, 'netns', 'list-id']);
      for (const link of links) {
        if (link.link_netnsid === undefined) continue;
        const peer = new RegExp(`nsid ${link.link_netnsid} \\(iproute2 netns name: (\\S+)\\)`).exec(ids)?.[1];
        assert.ok(peer?.startsWith(`${LAB_PREFIX}-${process.pid}-`), `${ns}/${link.ifname} leads to ${peer}`);
      }
    }
  });

  test('home A reaches the relay through NAT, which sees the home public address', async () => {
    const server = await listenIn('relay', '0.0.0.0', 4100);
    try {
      assert.equal(await connectFrom('hostA', ADDR.relay, 4100), 'connected');
      await waitForLine(server, /^from /m, 'the relay to see the connection');
      assert.match(server.output.text, new RegExp(`from ${ADDR.natA.wan.replaceAll('.', '\\.')}`));
    } finally {
      killGroup(server.child, 'SIGKILL');
    }
  });

  test('unsolicited inbound to a home is dropped; the internet drops private destinations', async () => {
    const server = await listenIn('hostA', '0.0.0.0', 4101);
    try {
      const results = await Promise.all([
        connectFrom('pub', ADDR.natA.wan, 4101),
        connectFrom('clientB', ADDR.hostA, 4101),
        connectFrom('pub', ADDR.natA.lan, 4101),
      ]);
      assert.deepEqual(results, ['timeout', 'timeout', 'timeout']);
      assert.doesNotMatch(server.output.text, /from /);
    } finally {
      killGroup(server.child, 'SIGKILL');
    }
  });

  test('the public host is reachable from a home', async () => {
    const server = await listenIn('pub', '0.0.0.0', 4102);
    try {
      assert.equal(await connectFrom('clientB', ADDR.pub, 4102), 'connected');
    } finally {
      killGroup(server.child, 'SIGKILL');
    }
  });

  test('UDP hole punching works between cone NATs and fails through the symmetric one', async () => {
    const punch = async (role: LabRole, localPort: number, host: string, port: number) => {
      const probe = spawnInNs(
        lab.ns(role),
        [PROBE, 'punch', `${localPort}`, host, `${port}`, '4000'],
        nodeEnv(),
      );
      await probe.exited;
      return probe.output.text.trim();
    };
    // MASQUERADE keeps the source port when it is free: each side aims at the other's mapping.
    const cone = await Promise.all([
      punch('hostA', 5000, ADDR.natB.wan, 5000),
      punch('clientB', 5000, ADDR.natA.wan, 5000),
    ]);
    assert.deepEqual(cone, ['received', 'received']);
    const symmetric = await Promise.all([
      punch('hostC', 5001, ADDR.natB.wan, 5001),
      punch('clientB', 5001, ADDR.natC.wan, 5001),
    ]);
    assert.deepEqual(symmetric, ['timeout', 'timeout']);
  });

  test('the IPv6 LAN carries TCP between its two machines', async () => {
    const server = await listenIn('v6B', '::', 4103);
    try {
      assert.equal(await connectFrom('v6A', ADDR.v6B, 4103), 'connected');
    } finally {
      killGroup(server.child, 'SIGKILL');
    }
  });

  test('the sweeper removes namespaces and processes a crashed run left behind', async () => {
    // A dead owner: pid 2^22 + 1 is above Linux's pid_max ceiling, so no process has it.
    const stale = `${LAB_PREFIX}-4194305-stale`;
    await ip(['netns', 'add', stale]);
    const orphan = spawnInNs(stale, [PROBE, 'listen', '127.0.0.1', '4104'], nodeEnv());
    await waitForLine(orphan, /^listening$/m, 'the orphan');
    const swept = await sweepStaleLabs();
    assert.ok(swept.includes(stale));
    assert.ok(!(await listNamespaces()).includes(stale));
    await orphan.exited;
    assert.ok(
      (await listNamespaces()).some((ns) => ns.startsWith(`${LAB_PREFIX}-${process.pid}-`)),
      'ours stays',
    );
  });
});
