import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { KEEP_ALIVE } from '@libp2p/interface';
import { peerIdFromEndpointId } from '../../src/mesh/identity.ts';
import { REDIAL_GUARD } from '../../src/mesh/services/redial-guard.ts';
import { Cluster, libp2pOf, waitFor } from './helpers.ts';

const cluster = new Cluster();
after(() => cluster.cleanup());

test('a member that is refused after every handshake stops redialling its peers', async () => {
  const owner = await cluster.node({ meshId: undefined, dataDir: await cluster.tempDir() });
  const member = await cluster.node({ meshId: undefined, dataDir: await cluster.tempDir() });
  await member.join(owner.inviteToken());
  await waitFor(() => member.peer(owner.endpointId) !== undefined, 'member knows the owner');
  const ownerPeer = peerIdFromEndpointId(owner.endpointId);
  const keepAlive = async () =>
    [...(await libp2pOf(member).peerStore.get(ownerPeer)).tags.keys()].filter((t) =>
      t.startsWith(KEEP_ALIVE),
    );
  await waitFor(() => libp2pOf(member).getConnections(ownerPeer).length > 0, 'connected');
  assert.ok((await keepAlive()).length > 0, 'the owner is redialled while it is a member');

  // Count the member's connections to the owner: the owner's gater closes each one after the
  // handshake, which libp2p's reconnect queue took as a success and redialled at once.
  let opened = 0;
  const count = (evt: Event) => {
    const { remotePeer } = (evt as CustomEvent<{ remotePeer: { equals(p: unknown): boolean } }>).detail;
    if (remotePeer.equals(ownerPeer)) opened++;
  };
  const events = libp2pOf(member) as unknown as EventTarget;
  events.addEventListener('connection:open', count);
  await owner.revoke(member.endpointId);
  const deadline = Date.now() + 10_000;
  while ((await keepAlive()).length > 0) {
    assert.ok(Date.now() < deadline, `still redialled after ${opened} refused connections`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const afterUntag = opened;
  await new Promise((r) => setTimeout(r, 3_000));
  events.removeEventListener('connection:open', count);
  assert.ok(opened <= REDIAL_GUARD.quickCloses + 2, `${opened} connections before the redials stopped`);
  // At most the one dial already in flight when the tags went.
  assert.ok(opened - afterUntag <= 1, `${opened - afterUntag} connections after the tags went`);
});
