import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { StreamTapEvent } from '../../src/mesh/types.ts';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { TestCluster, waitUntil } from '../helpers/cluster.ts';
import { startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { startSwtpm } from '../helpers/swtpm.ts';

const PROMPT_MARKER = 'ATTESTED-PROMPT-4c1d2e';

/**
 * Host A attests with a key in a (software) TPM, host B with a software key, host C with no
 * statement at all; all serve the same model. A client that requires attested hosts is routed
 * only to A, and once A is gone it gets `no_attested_host` — and no byte of a request leaves it.
 */
describe('--require-attested-hosts routes only to attested hosts and fails closed', () => {
  const cluster = new TestCluster();
  const closers: (() => Promise<void>)[] = [];
  const strictTap: StreamTapEvent[] = [];
  let a: MeshNode;
  let b: MeshNode;
  let c: MeshNode;
  let strict: MeshNode;
  let relaxed: MeshNode;
  const savedTcti = process.env.TPM2TOOLS_TCTI;

  before(async () => {
    const tpm = await startSwtpm();
    closers.push(tpm.stop);
    process.env.TPM2TOOLS_TCTI = tpm.tcti;
    const fakes = await Promise.all(
      ['a', 'b', 'c'].map(() => startFakeOpenAi({ tokens: 3, model: 'shared' })),
    );
    for (const fake of fakes) closers.push(fake.close);
    a = await cluster.start('host-a-tpm', {
      attestationKey: 'tpm2',
      backend: { url: fakes[0]!.url, model: 'shared' },
    });
    const token = a.mesh.inviteToken();
    b = await cluster.start('host-b-soft', {
      join: [token],
      backend: { url: fakes[1]!.url, model: 'shared' },
    });
    c = await cluster.start('host-c-none', {
      join: [token],
      e2e: false,
      backend: { url: fakes[2]!.url, model: 'shared' },
    });
    const policyPath = join(await cluster.root(), 'policy.json');
    // A claimed tier counts only for a key the operator pinned (issue #15 finding 2).
    await writeFile(
      policyPath,
      JSON.stringify({
        minimumTier: 'hardware-claimed',
        pinnedKeys: { [a.endpointId]: a.status().node.attestation.publicKey },
      }),
    );
    strict = await cluster.start(
      'strict-client',
      { client: true, join: [token], requireAttestedHosts: true, attestationPolicyPath: policyPath },
      { streamTap: (e) => strictTap.push(e) },
    );
    relaxed = await cluster.start('relaxed-client', { client: true, join: [token] });
    for (const client of [strict, relaxed]) {
      await waitUntil(() => {
        const peers = client.status().peers;
        const tierOf = (node: MeshNode) => peers.find((p) => p.id === node.endpointId)?.attestation;
        return (
          tierOf(a)?.live === true && tierOf(b)?.live === true && peers.some((p) => p.id === c.endpointId)
        );
      }, 'clients to verify and challenge the hosts');
    }
  });
  after(async () => {
    await cluster.stopAll();
    for (const close of closers) await close();
    if (savedTcti === undefined) delete process.env.TPM2TOOLS_TCTI;
    else process.env.TPM2TOOLS_TCTI = savedTcti;
  });

  const ask = (node: MeshNode) =>
    fetch(`${node.apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'shared', messages: [{ role: 'user', content: PROMPT_MARKER }] }),
    });

  test('status shows each host at its tier', () => {
    const peers = strict.status().peers;
    const peerA = peers.find((p) => p.id === a.endpointId)!;
    assert.equal(peerA.attestation?.tier, 'hardware-claimed');
    assert.equal(peerA.attestation?.keyStorage, 'tpm2');
    assert.equal(peerA.attestation?.pinned, true);
    assert.equal(peerA.attestation?.operatorTrusted, true);
    assert.equal(peers.find((p) => p.id === b.endpointId)?.attestation?.tier, 'self-signed');
    const peerC = peers.find((p) => p.id === c.endpointId)!;
    assert.equal(peerC.attestation?.tier ?? 'none', 'none');
    assert.equal(peerC.e2e.capable, false);
  });

  test('the strict client is routed only to A, sealed', async () => {
    for (let i = 0; i < 6; i++) {
      const response = await ask(strict);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-mesh-host'), a.endpointId);
      assert.equal(response.headers.get('x-mesh-e2e'), 'encrypted');
      await response.arrayBuffer();
    }
  });

  test('when A stops, the strict client gets no_attested_host and sends nothing anywhere', async () => {
    await cluster.stopNode(a);
    await waitUntil(() => !strict.status().peers.some((p) => p.id === a.endpointId), 'A to leave');
    strictTap.length = 0;
    const response = await ask(strict);
    assert.equal(response.status, 503);
    const body = (await response.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'no_attested_host');
    assert.match(body.error.message, new RegExp(b.endpointId.slice(0, 12)));
    assert.match(body.error.message, new RegExp(c.endpointId.slice(0, 12)));
    const sent = strictTap.filter((e) => e.protocol === PROTOCOL_HTTP && e.direction === 'out');
    assert.equal(sent.length, 0, 'no request bytes left the strict client');
    const relaxedAnswer = await ask(relaxed);
    assert.equal(relaxedAnswer.status, 200, 'a client without the policy still uses B or C');
    await relaxedAnswer.arrayBuffer();
  });
});
