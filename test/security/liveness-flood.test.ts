import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { challengePeer } from '../../src/mesh/attest-protocol.ts';
import { PROTOCOL_ATTEST } from '../../src/mesh/types.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { startSwtpm } from '../helpers/swtpm.ts';
import { chatBody, rawRequest } from './helpers.ts';

/**
 * Issue #15 finding 8: a liveness-challenge flood (600 in flight) made a TPM host "not live" to
 * a --require-attested-hosts client, which answered no_attested_host for the whole attack.
 */
describe('a liveness-challenge flood delays only the flooder', () => {
  const cluster = new TestCluster();
  const closers: (() => Promise<void>)[] = [];
  const savedTcti = process.env.TPM2TOOLS_TCTI;
  let fake: FakeOpenAiServer;
  let host: MeshNode;
  let strict: MeshNode;
  let flooder: MeshNode;
  let hostKey: string;

  before(async () => {
    const tpm = await startSwtpm();
    closers.push(tpm.stop);
    process.env.TPM2TOOLS_TCTI = tpm.tcti;
    fake = await startFakeOpenAi({ tokens: 2, model: 'shared' });
    host = await cluster.start('tpm-host', {
      attestationKey: 'tpm2',
      backend: { url: fake.url, model: 'shared' },
    });
    hostKey = host.status().node.attestation.publicKey!;
    const policy = join(await cluster.root(), 'policy.json');
    await writeFile(policy, JSON.stringify({ pinnedKeys: { [host.endpointId]: hostKey } }));
    strict = await cluster.start('strict-client', {
      client: true,
      join: [host.mesh.inviteToken()],
      requireAttestedHosts: true,
      attestationPolicyPath: policy,
      heartbeatMs: 3_000,
    });
    flooder = await cluster.start('flooder', {
      client: true,
      join: [host.mesh.inviteToken()],
      heartbeatMs: 3_000,
    });
    await waitUntil(
      () => strict.status().peers.find((p) => p.id === host.endpointId)?.attestation?.live === true,
      'the strict client to see the host live',
    );
    await waitUntil(() => host.mesh.peer(flooder.endpointId) !== undefined, 'the host to know the flooder');
  });
  after(async () => {
    await cluster.stopAll();
    await fake.close();
    for (const close of closers) await close();
    if (savedTcti === undefined) delete process.env.TPM2TOOLS_TCTI;
    else process.env.TPM2TOOLS_TCTI = savedTcti;
  });

  test('the strict client keeps the host live and keeps being served during the flood', async () => {
    let flooding = true;
    let answered = 0;
    let refused = 0;
    // 100 challenges in flight from one member (a TPM signs in about 0.3 s here, so that is 30 s
    // of signing), each renewed a second after it ends.
    const slots = Array.from({ length: 100 }, async () => {
      while (flooding) {
        try {
          const stream = await flooder.mesh.openStream(host.endpointId, PROTOCOL_ATTEST);
          if (await challengePeer(stream, hostKey, { timeoutMs: 60_000 })) answered++;
          else refused++;
        } catch {
          refused++;
        }
        await sleep(1_000);
      }
    });
    const failures: string[] = [];
    try {
      for (let second = 0; second < 20; second++) {
        await sleep(1_000);
        const view = strict.status().peers.find((p) => p.id === host.endpointId)?.attestation;
        if (view?.live !== true) failures.push(`t=${second}s not live: ${view?.failureReason}`);
        const answer = await rawRequest(strict.apiUrl, {
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json' },
          body: chatBody('shared'),
          timeoutMs: 30_000,
        });
        if (answer.status !== 200)
          failures.push(`t=${second}s ${answer.status} ${answer.text.slice(0, 120)}`);
      }
    } finally {
      flooding = false;
      await Promise.all(slots);
    }
    if (failures.length > 0) {
      for (const name of ['strict-client', 'tpm-host']) {
        const lines = (cluster.logs.get(name) ?? []).filter((l) =>
          /warn|error|removed|silent|closed|left/i.test(l),
        );
        console.log(name, lines.slice(-40).join(''));
      }
    }
    assert.deepEqual(failures, [], `flooder: ${answered} answered, ${refused} refused`);
    assert.ok(
      refused > answered,
      `the flooder was refused beyond its share (${answered} answered, ${refused} refused)`,
    );
  });
});
