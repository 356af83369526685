/**
 * The mesh on a plain LAN and on an IPv6-only LAN (see topology.ts), each node a real
 * `mesh-llm serve` process in its own namespace. Bounds from issue #14; each test prints its figures.
 */
import assert from 'node:assert/strict';
import { after, before, describe, type TestContext, test } from 'node:test';
import { decodeInviteToken } from '../../src/mesh/invite.ts';
import { chat, LabNode, waitFor } from './lab-node.ts';
import { labUnavailableReason } from './netns.ts';
import { ADDR, Lab } from './topology.ts';

const unavailable = await labUnavailableReason();
if (unavailable) console.log(`# ${unavailable}`);

const LAN_MODEL = 'lan-model';

// The scenarios use separate machines (mDNS: lanC/lanD, restart: lanA/lanB, IPv6: v6A/v6B), so
// they run side by side.
describe('mesh on a LAN and an IPv6 LAN (network-namespace lab)', {
  skip: unavailable,
  concurrency: true,
}, () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create({ lan: true, lan6: true });
  });
  after(() => lab?.destroy());

  type Start = (...args: Parameters<typeof LabNode.start>) => Promise<LabNode>;
  /** A scenario whose nodes are closed when it ends, passed or failed (their logs shown if it failed). */
  const scenario = (name: string, fn: (t: TestContext, start: Start) => Promise<void>) =>
    test(name, async (t) => {
      const nodes: LabNode[] = [];
      const start: Start = async (...args) => {
        const node = await LabNode.start(...args);
        nodes.push(node);
        return node;
      };
      try {
        await fn(t, start);
      } catch (err) {
        for (const node of nodes) t.diagnostic(`${node.name} log tail:\n${node.output.slice(-1_500)}`);
        throw err;
      } finally {
        await Promise.all(nodes.map((n) => n.close()));
      }
    });
  /** Time until `client` answers a chat for `model` with 200, or the error after `timeoutMs`. */
  const timeToAnswer = async (client: LabNode, model: string, timeoutMs: number) => {
    const begin = performance.now();
    return waitFor(`${client.name} to get an answer from ${model}`, timeoutMs, async () => {
      if (!(await client.models()).includes(model)) return undefined;
      return (await chat(client, model, 10_000)).status === 200;
    }).then(
      () => performance.now() - begin,
      (err: Error) => err,
    );
  };

  scenario('--mdns: two fresh nodes on one LAN form one mesh without a token (<= 20 s)', async (t, start) => {
    const host = await start(lab, 'lanC', ['--mdns'], { model: LAN_MODEL, name: 'mdns-host' });
    const client = await start(lab, 'lanD', ['--client', '--mdns'], { name: 'mdns-client' });
    const answered = await timeToAnswer(client, LAN_MODEL, 20_000);
    t.diagnostic(
      `mdns: ${answered instanceof Error ? answered.message : `answered after ${Math.round(answered)} ms`}`,
    );
    const [hostMesh, clientMesh] = await Promise.all([host.status(), client.status()]);
    assert.equal(clientMesh.node.meshId, hostMesh.node.meshId, 'both nodes are in one mesh');
    if (answered instanceof Error) throw answered;
  });

  scenario(
    'LAN host restarted without --bind-port: its peer reaches it again (<= 20 s)',
    async (t, start) => {
      const host = await start(lab, 'lanA', [], { model: LAN_MODEL, name: 'lan-host' });
      const token = await host.token();
      const client = await start(lab, 'lanB', ['--client', '--join', token], { name: 'lan-client' });
      const first = await timeToAnswer(client, LAN_MODEL, 20_000);
      if (first instanceof Error) throw first;
      t.diagnostic(`before the restart: answered after ${Math.round(first)} ms`);
      const portBefore = (await host.status()).node.addresses.find((a) => a.includes(ADDR.lanA));
      await host.kill('SIGTERM');
      await host.startNode();
      const portAfter = (await host.status()).node.addresses.find((a) => a.includes(ADDR.lanA));
      t.diagnostic(`mesh address before ${portBefore}, after ${portAfter}`);
      const again = await timeToAnswer(client, LAN_MODEL, 20_000);
      t.diagnostic(
        `after the restart: ${again instanceof Error ? again.message : `answered after ${Math.round(again)} ms`}`,
      );
      if (again instanceof Error) throw again;
    },
  );

  scenario('IPv6-only LAN: the token holds the v6 address and requests flow over IPv6', async (t, start) => {
    const host = await start(lab, 'v6A', [], { model: 'v6-model', name: 'v6-host' });
    const token = await host.token();
    const addrs = decodeInviteToken(token).addrs;
    t.diagnostic(`v6 host token addresses: ${addrs.join(' ')}`);
    assert.ok(
      addrs.some((a) => a.startsWith(`/ip6/${ADDR.v6A}/`)),
      `the token holds ${ADDR.v6A} (it holds ${addrs.join(', ')})`,
    );
    const client = await start(lab, 'v6B', ['--client', '--join', token], { name: 'v6-client' });
    const answered = await timeToAnswer(client, 'v6-model', 20_000);
    t.diagnostic(
      `v6: ${answered instanceof Error ? answered.message : `answered after ${Math.round(answered)} ms`}`,
    );
    if (answered instanceof Error) throw answered;
  });
});
