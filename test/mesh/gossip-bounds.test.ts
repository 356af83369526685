import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forgeOrigins, pushGossip } from './attacker.ts';
import { clusterPerTest, HEARTBEAT_MS, waitFor } from './helpers.ts';

const cluster = clusterPerTest();

// Issue #15 finding 1: a member pushing more origins than one gossip message may carry made
// every receiver reject the victim's messages whole, for good (peers=0 mesh-wide).
test('a member flooding 4,200 fresh origins does not partition the mesh', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  const c = await cluster().node();
  await b.join(a.inviteToken());
  await c.join(a.inviteToken());
  const attacker = await cluster().node();
  for (const victim of [a, b, c]) await attacker.join(victim.inviteToken());
  await waitFor(() => a.peer(attacker.endpointId) !== undefined, 'attacker admitted');

  await waitFor(() => [a, b, c].every((n) => n.peers().length === 3), 'mesh formed');

  const started = Date.now();
  const fakes = await forgeOrigins(4_200, 'test-mesh');
  const forged = Date.now() - started;
  for (const victim of [a, b, c]) {
    for (let i = 0; i < fakes.length; i += 1_000) {
      await pushGossip(
        attacker,
        victim,
        fakes.slice(i, i + 1_000).map((f) => f.signed),
      );
    }
  }
  await attacker.abort();
  console.log(`forged in ${forged} ms, pushed in ${Date.now() - started - forged} ms`);
  // Several heartbeats: the fakes fall silent and are swept; the real peers must stay.
  await new Promise((r) => setTimeout(r, HEARTBEAT_MS * 5));
  // On a loaded machine a real peer may miss a beat, but the mesh must come back together (it
  // never did: every exchange of the flooded nodes was refused whole, for good).
  await waitFor(
    () => a.peer(b.endpointId) !== undefined && a.peer(c.endpointId) !== undefined,
    'A holds B and C',
    30_000,
  );

  // A newcomer that knows only A must still learn the rest of the mesh through it.
  const d = await cluster().node();
  await d.join(a.inviteToken());
  await waitFor(
    () => d.peer(b.endpointId) !== undefined && d.peer(c.endpointId) !== undefined,
    'newcomer learns the mesh through the flooded node',
    30_000,
  );
  await waitFor(() => b.peer(d.endpointId) !== undefined, 'B learns the newcomer', 30_000);
  // What the flood left behind stays well under one message's cap.
  assert.ok(a.peers().length <= 1_024, `A holds ${a.peers().length} peers`);
});
