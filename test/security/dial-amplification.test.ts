import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SoftwareKeyProvider } from '../../src/attestation/providers/software.ts';
import { buildStatement, encodeStatement } from '../../src/attestation/statement.ts';
import { silentLogger } from '../../src/log.ts';
import { generateIdentity } from '../../src/mesh/identity.ts';
import { currentPosture } from '../../src/node/posture.ts';
import { VERSION } from '../../src/node/version.ts';
import { TestCluster, waitUntil } from '../helpers/cluster.ts';
import { forgeAnnouncement, pushGossip } from '../mesh/attacker.ts';
import { Cluster } from '../mesh/helpers.ts';

/**
 * Issue #15 finding 5: 300 fake members, each with a valid statement and the listen address
 * 127.0.0.1:P of someone else's server, made the nodes dial P thousands of times (liveness
 * challenges every heartbeat).
 */
describe('announced addresses cannot turn a node into a dialing cannon', () => {
  const nodes = new TestCluster();
  const meshes = new Cluster();
  let sink: Server | undefined;
  after(async () => {
    sink?.close();
    await meshes.cleanup();
    await nodes.stopAll();
  });

  test('300 fake peers announcing one address get a handful of connections there', async () => {
    // A mesh from before owner keys (its mesh id alone admits): in a mesh with an owner, each
    // fake identity would first need a certificate from the owner node, itself rate-limited.
    const victimDir = join(await nodes.root(), 'victim');
    await mkdir(victimDir, { recursive: true });
    await writeFile(join(victimDir, 'mesh-id'), 'legacy-mesh\n');
    const victim = await nodes.start('victim', { client: true, heartbeatMs: 1_500, dataDir: victimDir });
    const attacker = await meshes.node({ meshId: victim.mesh.meshId, heartbeatMs: 1_500 });
    await attacker.join(victim.mesh.inviteToken());
    // The announced address: a counting proxy to a real libp2p listener (the attacker's), which
    // answers every dial at once with the wrong peer id, as any third party's node would.
    const target = new URL(
      `tcp://${attacker.addresses()[0]!.split('/')[2]}:${attacker.addresses()[0]!.split('/')[4]}`,
    );
    let connections = 0;
    sink = createServer((socket) => {
      connections++;
      const upstream = connect(Number(target.port), target.hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => sink!.listen(0, '127.0.0.1', resolve));
    const port = (sink.address() as { port: number }).port;
    await waitUntil(() => victim.mesh.peer(attacker.endpointId) !== undefined, 'attacker admitted');

    const key = await SoftwareKeyProvider.open({ dataDir: await meshes.tempDir(), logger: silentLogger() });
    const posture = await currentPosture(undefined, silentLogger());
    const fakes = [];
    for (let i = 0; i < 300; i++) {
      const identity = await generateIdentity();
      const inferencePublicKey = randomBytes(32).toString('base64');
      const statement = await buildStatement(
        {
          chipName: 'x',
          hardwareModel: 'x',
          unifiedMemoryBytes: 1,
          nodeEndpointId: identity.endpointId,
          inferencePublicKey,
          version: VERSION,
          posture,
          nowMs: Date.now(),
        },
        key,
      );
      fakes.push({
        identity,
        fields: {
          meshId: victim.mesh.meshId,
          listenAddrs: [`/ip4/127.0.0.1/tcp/${port}/p2p/${identity.peerId.toString()}`],
          inferencePublicKey,
          hardwareAttestationBlob: encodeStatement(statement),
        },
      });
    }
    const signed = await Promise.all(fakes.map((f) => forgeAnnouncement(f.identity, f.fields)));
    await pushGossip(attacker, victim.mesh, signed);
    await waitUntil(() => victim.mesh.peers().length > 100, 'the fakes are members');
    // Four heartbeats: each challenges every attested peer.
    await new Promise((r) => setTimeout(r, 4_500));
    assert.ok(connections <= 12, `${connections} connections to the announced address`);
  });
});
