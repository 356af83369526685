import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Libp2p } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import type { Libp2pMesh } from '../../src/mesh/libp2p-mesh.ts';
import { clusterPerTest, waitFor } from './helpers.ts';

const cluster = clusterPerTest();
const SINK = '/test/sink/1.0.0';
const raw = (node: Libp2pMesh) => (node as unknown as { libp2p: Libp2p }).libp2p;

/** A non-member behind the relay: another mesh's node, reachable only through a circuit. */
async function stranger(relay: Libp2pMesh): Promise<Libp2pMesh> {
  const node = await cluster().node({ meshId: 'not-this-mesh', reachableOnlyViaRelay: true });
  await raw(node).dial(multiaddr(relay.addresses()[0]!));
  return node;
}

// Issue #15 finding 4: a --relay node carried 200 MiB between two non-members in 8 s, and
// strangers took 255 of its 256 reservation slots, leaving a NATed member none.
test('strangers get libp2p default circuit limits: 1 MiB between two of them is cut', async () => {
  const relay = await cluster().node({ relay: true });
  const a = await stranger(relay);
  await waitFor(() => a.addresses().some((x) => x.includes('/p2p-circuit')), 'stranger reservation');
  let received = 0;
  await raw(a).handle(
    SINK,
    async (stream) => {
      for await (const chunk of stream) received += chunk.byteLength;
    },
    { runOnLimitedConnection: true },
  );
  const b = await cluster().node({ meshId: 'not-this-mesh-either' });
  const circuit = multiaddr(`${relay.addresses()[0]}/p2p-circuit/p2p/${a.peerId}`);
  const stream = await raw(b).dialProtocol(circuit, SINK, { runOnLimitedConnection: true });
  const chunk = new Uint8Array(64 * 1024);
  const closed = new Promise((r) => stream.addEventListener('close', r, { once: true }));
  try {
    for (let sent = 0; sent < 1024 * 1024 && stream.status === 'open'; sent += chunk.byteLength) {
      if (!stream.send(chunk)) {
        await Promise.race([new Promise((r) => stream.addEventListener('drain', r, { once: true })), closed]);
      }
    }
    await Promise.race([stream.close(), closed]);
  } catch {
    // The relay cut the circuit: what the limit is for.
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(received < 1024 * 1024, `${received} bytes crossed the relay between two strangers`);
  assert.ok(received <= 256 * 1024, `${received} bytes: at most libp2p's 128 KiB default (and framing)`);
});

test('a NATed member gets a reservation although strangers tried to take every slot', async () => {
  const relay = await cluster().node({ relay: true, relaySlots: 4 });
  const strangers = await Promise.all([1, 2, 3, 4].map(() => stranger(relay)));
  await waitFor(
    () => strangers.filter((s) => s.addresses().some((x) => x.includes('/p2p-circuit'))).length >= 2,
    'strangers reserve what they may',
  );
  await new Promise((r) => setTimeout(r, 500));
  const member = await cluster().node({ reachableOnlyViaRelay: true });
  await member.join(relay.inviteToken());
  await waitFor(
    () => member.addresses().some((x) => x.includes('/p2p-circuit')),
    'member reservation',
    15_000,
  );
});
