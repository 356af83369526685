import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { KEEP_ALIVE } from '@libp2p/interface';
import { silentLogger } from '../../src/log.ts';
import { peerIdFromEndpointId } from '../../src/mesh/identity.ts';
import type { MeshComponents, MeshContext } from '../../src/mesh/services/context.ts';
import { REDIAL_GUARD, RedialGuardService } from '../../src/mesh/services/redial-guard.ts';
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

/** The guard on stand-in components: a peer store of tags and libp2p's connection events. */
function guardOnFakes() {
  const events = new EventTarget();
  const tags = new Map<string, Map<string, unknown>>();
  const components = {
    events,
    connectionManager: { getConnections: () => [] },
    peerStore: {
      get: async (peer: { toString(): string }) => ({ tags: tags.get(peer.toString()) ?? new Map() }),
      merge: async (peer: { toString(): string }, update: { tags: Record<string, unknown> }) => {
        const held = tags.get(peer.toString()) ?? new Map();
        for (const [tag, value] of Object.entries(update.tags)) {
          if (value === undefined) held.delete(tag);
          else held.set(tag, value);
        }
        tags.set(peer.toString(), held);
      },
    },
  } as unknown as MeshComponents;
  const context = { log: silentLogger(), stopSignal: new AbortController().signal } as unknown as MeshContext;
  const guard = new RedialGuardService(context, components);
  guard.start();
  const connection = (peer: string, openedAgoMs: number) => ({
    remotePeer: { toString: () => peer },
    status: 'open',
    timeline: { open: Date.now() - openedAgoMs },
  });
  const emit = (type: string, detail: unknown) => events.dispatchEvent(new CustomEvent(type, { detail }));
  return { guard, tags, connection, emit };
}

test('the guard remembers at most maxPeers peers, and a connection that lasts gives the tags back', async () => {
  const { guard, tags, connection, emit } = guardOnFakes();
  const tag = `${KEEP_ALIVE}-mesh-member`;
  const settle = () => new Promise((r) => setTimeout(r, 50));
  tags.set('refuser', new Map([[tag, { value: 1 }]]));
  for (let close = 0; close < REDIAL_GUARD.quickCloses; close++)
    emit('connection:close', connection('refuser', 10));
  await settle();
  assert.equal(tags.get('refuser')!.has(tag), false, 'three connections closed at once untag the peer');

  // More peers than the guard remembers, each closing and opening quickly, over and over.
  const peers = Array.from({ length: REDIAL_GUARD.maxPeers + 50 }, (_, i) => `peer-${i}`);
  for (const peer of peers) tags.set(peer, new Map([[tag, { value: 1 }]]));
  for (let round = 0; round < REDIAL_GUARD.quickCloses; round++) {
    for (const peer of peers) emit('connection:close', connection(peer, 10));
  }
  await settle();
  for (const peer of peers) emit('connection:open', connection(peer, 0));
  const sizes = guard.sizes();
  assert.ok(sizes.closes <= REDIAL_GUARD.maxPeers, `${sizes.closes} peers' closes held`);
  assert.ok(sizes.untagged <= REDIAL_GUARD.maxPeers, `${sizes.untagged} untagged peers held`);
  assert.ok(sizes.timers <= REDIAL_GUARD.maxPeers, `${sizes.timers} timers held`);

  for (let i = 0; i < 100; i++) emit('connection:open', connection('refuser', 0));
  assert.equal(guard.sizes().timers, 1, 'one pending check per untagged peer, however often it connects');
  await new Promise((r) => setTimeout(r, REDIAL_GUARD.quickCloseMs + 200));
  assert.equal(tags.get('refuser')!.has(tag), true, 'a connection open for quickCloseMs restores the tag');
  guard.stop();
});
