import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LAN_MESH_ID } from '../../src/mesh/libp2p-mesh.ts';
import { clusterPerTest, HEARTBEAT_MS, waitFor } from './helpers.ts';

const cluster = clusterPerTest();

test('two fresh --mdns nodes form one mesh without a token; a private mesh stays apart', async () => {
  const lan = { mdns: true, meshId: LAN_MESH_ID, listenHost: '0.0.0.0' };
  const a = await cluster().node(lan);
  const b = await cluster().node(lan);
  await waitFor(
    () => a.peer(b.endpointId) !== undefined && b.peer(a.endpointId) !== undefined,
    'the LAN nodes find each other',
    30_000,
  );
  // A node of its own mesh (given --join) also discovers them, but nobody learns anybody.
  const own = await cluster().node({ mdns: true, meshId: 'a-private-mesh', listenHost: '0.0.0.0' });
  await waitFor(() => own.connectionsTo(a.endpointId).length > 0, 'mDNS dials across meshes', 30_000);
  await new Promise((r) => setTimeout(r, HEARTBEAT_MS * 4));
  assert.equal(own.peers().length, 0, 'the private node learns no LAN node');
  assert.equal(a.peer(own.endpointId), undefined, 'the LAN mesh does not learn the private node');
  assert.equal(b.peer(own.endpointId), undefined);
});
