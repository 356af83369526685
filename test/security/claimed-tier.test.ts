import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SoftwareKeyProvider } from '../../src/attestation/providers/software.ts';
import type { AttestationKeyProvider } from '../../src/attestation/providers/types.ts';
import { buildStatement, encodeStatement } from '../../src/attestation/statement.ts';
import { silentLogger } from '../../src/log.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { VERSION } from '../../src/node/version.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { chatBody, rawRequest } from './helpers.ts';

/**
 * Issue #15 finding 2: a member with a software key that claims `key_storage: tpm2`, a perfect
 * posture and the honest binary hash got tier hardware-claimed and was preferred over honest
 * hosts, by plain clients and by `--require-attested-hosts` clients under the default policy.
 */

/** Re-signs `node`'s statement with its own software key, claiming the key lives in a TPM. */
async function claimHardware(node: MeshNode): Promise<string> {
  const software = await SoftwareKeyProvider.open({ dataDir: node.config.dataDir, logger: silentLogger() });
  const liar: AttestationKeyProvider = {
    kind: 'tpm2',
    hardware: true,
    publicKey: () => software.publicKey(),
    sign: (data) => software.sign(data),
  };
  const self = node.status().node;
  const statement = await buildStatement(
    {
      chipName: 'Genuine Secure Chip',
      hardwareModel: 'Trusted Box',
      unifiedMemoryBytes: 1 << 30,
      nodeEndpointId: node.endpointId,
      inferencePublicKey: self.e2e.inferencePublicKey!,
      version: VERSION,
      posture: {
        ...self.posture,
        debuggerBlocked: true,
        coreDumpsDisabled: true,
        inspectorClosed: true,
        environmentClean: true,
        secureBootEnabled: true,
        plaintextBoundary: 'in-process',
      },
      nowMs: Date.now(),
    },
    liar,
  );
  await node.mesh.updateAnnouncement({ hardwareAttestationBlob: encodeStatement(statement) });
  return statement.attestation.sePublicKey;
}

const tierSeenBy = (observer: MeshNode, peer: MeshNode) =>
  observer.status().peers.find((p) => p.id === peer.endpointId)?.attestation;

describe('a claimed hardware tier earns nothing', () => {
  const cluster = new TestCluster();
  const fakes: FakeOpenAiServer[] = [];
  let honest: MeshNode;
  let liar: MeshNode;
  let liarKey: string;

  before(async () => {
    for (let i = 0; i < 2; i++) fakes.push(await startFakeOpenAi({ tokens: 2, model: 'shared' }));
    honest = await cluster.start('honest-host', { backend: { url: fakes[0]!.url, model: 'shared' } });
  });
  after(async () => {
    await cluster.stopAll();
    for (const fake of fakes) await fake.close();
  });

  test('a plain client does not prefer the lying host over a closer honest one', async () => {
    // This liar is reachable only through the honest host (no address of its own), so the client
    // is connected to the honest host only. A tier that was a reason to prefer a host sent every
    // request to the liar anyway, forwarded through the honest host.
    const farLiar = await cluster.start('far-lying-host', {
      join: [honest.mesh.inviteToken()],
      reachableOnlyViaRelay: true,
      backend: { url: fakes[1]!.url, model: 'shared' },
    });
    await claimHardware(farLiar);
    const client = await cluster.start('plain-client', { client: true, join: [honest.mesh.inviteToken()] });
    await waitUntil(
      () => tierSeenBy(client, farLiar)?.tier === 'hardware-claimed' && seesModel(client, 'shared'),
      'the client to verify the lying claim',
    );
    const hosts: string[] = [];
    for (let i = 0; i < 6; i++) {
      const answer = await rawRequest(client.apiUrl, {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' },
        body: chatBody('shared'),
      });
      assert.equal(answer.status, 200);
      hosts.push(String(answer.headers['x-mesh-host']));
    }
    assert.deepEqual(hosts, Array(6).fill(honest.endpointId), 'the connected honest host serves');
  });

  test('--require-attested-hosts under the default policy refuses a claim the operator did not trust', async () => {
    liar = await cluster.start('lying-host', {
      join: [honest.mesh.inviteToken()],
      backend: { url: fakes[1]!.url, model: 'shared' },
    });
    liarKey = await claimHardware(liar);
    const strict = await cluster.start('strict-client', {
      client: true,
      join: [liar.mesh.inviteToken()],
      requireAttestedHosts: true,
    });
    await waitUntil(
      () => tierSeenBy(strict, liar)?.tier === 'hardware-claimed' && tierSeenBy(strict, liar)?.live === true,
      'the strict client to verify and challenge the liar',
    );
    const before = fakes[1]!.requests;
    const answer = await rawRequest(strict.apiUrl, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: chatBody('shared'),
    });
    assert.equal(answer.status, 503);
    const { error } = JSON.parse(answer.text);
    assert.equal(error.code, 'no_attested_host');
    assert.match(error.message, /operator has not trusted its key/);
    assert.match(error.message, /pinnedKeys/, 'the message says how to trust a host');
    assert.equal(fakes[1]!.requests, before, 'no prompt reached the liar');
  });

  test('a key the operator pinned in the policy file is trusted', async () => {
    const policy = join(await cluster.root(), 'pinned.json');
    await writeFile(policy, JSON.stringify({ pinnedKeys: { [liar.endpointId]: liarKey } }));
    const pinned = await cluster.start('pinning-client', {
      client: true,
      join: [liar.mesh.inviteToken()],
      requireAttestedHosts: true,
      attestationPolicyPath: policy,
    });
    await waitUntil(
      () => tierSeenBy(pinned, liar)?.live === true,
      'the pinning client to challenge the liar',
    );
    assert.equal(tierSeenBy(pinned, liar)?.operatorTrusted, true);
    const answer = await rawRequest(pinned.apiUrl, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: chatBody('shared'),
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['x-mesh-host'], liar.endpointId);
  });
});
