/**
 * The mesh across the lab's internet (see topology.ts): a relay on a public address, a host
 * with a public address, two homes behind NAT and one behind a symmetric NAT, each node a real
 * `mesh-llm serve` process. The bounds are those of issue #14; each test prints its figures.
 *
 * The tests share one mesh and run in order: the later ones renumber home A and kill its host.
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

describe('mesh across NAT and the internet, pending (network-namespace lab)', { skip: unavailable }, () => {
  let lab: Lab;
  let mesh: InternetMesh;
  let pub: LabNode;
  let hostA: LabNode;
  let hostC: LabNode;
  let clientB: LabNode;

  before(async () => {
    lab = await Lab.create({ internet: true });
    mesh = await startInternetMesh(lab, { hostCTokenDelayMs: 200 });
    ({ pub, hostA, hostC, clientB } = mesh);
  });

  const extra: LabNode[] = [];
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

  test('NAT renumbering: the next request succeeds or fails with peer_unreachable; the one after succeeds', async (t) => {
    await clientSees(HOME_MODEL, 30_000);
    assert.equal((await chat(clientB, HOME_MODEL)).status, 200, 'home A answers before the renumbering');
    await lab.renumberHomeA();
    const next = await chat(clientB, HOME_MODEL, 20_000);
    t.diagnostic(`next: ${next.status} ${next.errorCode ?? ''} in ${Math.round(next.ms)} ms (${next.path})`);
    assert.ok(
      next.status === 200 || next.errorCode === 'peer_unreachable',
      `next request: ${next.status} ${next.errorCode}: ${next.errorMessage}`,
    );
    const afterThat = await chat(clientB, HOME_MODEL, 20_000);
    t.diagnostic(`after: ${afterThat.status} ${afterThat.errorCode ?? ''} in ${Math.round(afterThat.ms)} ms`);
    assert.equal(
      afterThat.status,
      200,
      `the request after: ${afterThat.errorCode}: ${afterThat.errorMessage}`,
    );
  });

  test('host SIGKILL: requests fail over or fail <= 5 s; its model leaves /v1/models <= 20 s', async (t) => {
    await clientSees(HOME_MODEL, 30_000);
    await hostA.kill('SIGKILL');
    const killed = performance.now();
    const request = await chat(clientB, HOME_MODEL, 30_000);
    t.diagnostic(
      `request after the kill: ${request.status} ${request.errorCode ?? ''} in ${Math.round(request.ms)} ms`,
    );
    const gone = await waitFor(
      `${HOME_MODEL} to leave clientB's /v1/models`,
      30_000,
      async () => !(await clientB.models()).includes(HOME_MODEL),
    ).then(
      () => performance.now() - killed,
      (err: Error) => err,
    );
    t.diagnostic(`model gone ${gone instanceof Error ? 'never' : `${Math.round(gone)} ms`} after the kill`);
    assert.ok(request.ms <= 5_000, `the request took ${Math.round(request.ms)} ms`);
    assert.doesNotMatch(
      request.errorCode ?? '',
      /^e2e_/,
      'a dead host is not reported as a decryption failure',
    );
    if (gone instanceof Error) throw gone;
    assert.ok(gone <= 20_000, `the model left /v1/models ${Math.round(gone)} ms after the kill`);
    assert.ok(hostC.running && pub.running, 'the other hosts are unaffected');
  });
  test('the public host is reached directly, never through the relay', async (t) => {
    await clientSees(PUB_MODEL, 30_000);
    const first = await chat(clientB, PUB_MODEL);
    t.diagnostic(`first request to the public host: ${Math.round(first.ms)} ms, path ${first.path}`);
    assert.equal(first.status, 200, first.errorMessage);
    assert.equal(first.path, 'direct');
  });
});
