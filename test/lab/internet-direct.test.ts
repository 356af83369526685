/**
 * Direct paths across the lab's internet (see topology.ts): the first request to a NATed host
 * with dead-end private interfaces, a newcomer joining with that host's token, the DCUtR
 * upgrade between two homes behind cone NATs, and the public host dialled directly. Each node
 * is a real `mesh-llm serve` process; the bounds are those of issue #14.
 *
 * The tests share one mesh and run in order (the first request to home A must be the first).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeInviteToken } from '../../src/mesh/invite.ts';
import { HOME_MODEL, type InternetMesh, PUB_MODEL, startInternetMesh } from './internet-mesh.ts';
import { chat, LabNode, waitFor } from './lab-node.ts';
import { labUnavailableReason } from './netns.ts';
import { Lab } from './topology.ts';

const unavailable = await labUnavailableReason();
if (unavailable) console.log(`# ${unavailable}`);

describe('direct paths across NAT and the internet (network-namespace lab)', { skip: unavailable }, () => {
  let lab: Lab;
  let mesh: InternetMesh;
  let hostA: LabNode;
  let clientB: LabNode;
  const extra: LabNode[] = [];

  before(async () => {
    lab = await Lab.create({ internet: true });
    mesh = await startInternetMesh(lab, { hostCTokenDelayMs: 0 });
    ({ hostA, clientB } = mesh);
  });

  after(async () => {
    await Promise.all(extra.map((n) => n.close().catch(() => undefined)));
    await mesh?.close();
    await lab?.destroy();
  });

  const clientSees = (model: string, timeoutMs: number) =>
    waitFor(`clientB to list ${model}`, timeoutMs, async () => (await clientB.models()).includes(model));

  test('first request to a NATed host with three extra private interfaces: <= 3 s', async (t) => {
    await clientSees(HOME_MODEL, 30_000);
    const first = await chat(clientB, HOME_MODEL);
    t.diagnostic(`first request: ${Math.round(first.ms)} ms, status ${first.status}, path ${first.path}`);
    assert.equal(first.status, 200, first.errorMessage);
    assert.ok(first.ms <= 3_000, `first request took ${Math.round(first.ms)} ms`);
  });

  test('the public host is reached directly, never through the relay', async (t) => {
    await clientSees(PUB_MODEL, 30_000);
    const first = await chat(clientB, PUB_MODEL);
    t.diagnostic(`first request to the public host: ${Math.round(first.ms)} ms, path ${first.path}`);
    assert.equal(first.status, 200, first.errorMessage);
    assert.equal(first.path, 'direct');
  });

  test('NATed client to NATed host goes direct after the upgrade (x-mesh-path: direct)', async (t) => {
    const start = performance.now();
    const direct = await waitFor('a direct path from home B to home A', 30_000, async () => {
      const result = await chat(clientB, HOME_MODEL);
      return result.status === 200 && result.path === 'direct' ? result : undefined;
    });
    t.diagnostic(
      `direct after ${Math.round(performance.now() - start)} ms; request ${Math.round(direct.ms)} ms`,
    );
  });

  test('a token printed on the NATed host lets a newcomer in another home join and get an answer <= 20 s', async (t) => {
    const token = await hostA.token();
    const addrs = decodeInviteToken(token).addrs;
    t.diagnostic(`home A's token addresses: ${addrs.join(' ')}`);
    const start = performance.now();
    const clientD = await LabNode.start(lab, 'clientD', ['--client', '--join', token]);
    extra.push(clientD);
    const answered = await waitFor('the newcomer to get an answer from home A', 20_000, async () => {
      if (!(await clientD.models()).includes(HOME_MODEL)) return undefined;
      return (await chat(clientD, HOME_MODEL, 10_000)).status === 200;
    }).then(
      () => performance.now() - start,
      (err: Error) => err,
    );
    t.diagnostic(
      `newcomer: ${answered instanceof Error ? answered.message : `answered ${Math.round(answered)} ms after it started`}`,
    );
    assert.ok(!addrs.some((a) => a.includes('/127.0.0.1/')), 'no loopback address in the token');
    if (answered instanceof Error) throw answered;
  });
});
