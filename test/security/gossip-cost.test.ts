import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Logger } from '../../src/log.ts';
import { generateIdentity } from '../../src/mesh/identity.ts';
import { forgeAnnouncement, pushGossip } from '../mesh/attacker.ts';
import { clusterPerTest, waitFor } from '../mesh/helpers.ts';

const cluster = clusterPerTest();

/** A logger that counts the lines at warn level and above. */
function countingLogger(): { logger: Logger; warnings: () => number } {
  let warnings = 0;
  const logger = pino({ level: 'warn' }, { write: () => void warnings++ });
  return { logger, warnings: () => warnings };
}

// A member could put thousands of fresh versions of its own announcement in one gossip message:
// each one passed the stale check, so the receiver verified and applied every one.
test('one gossip message with 2,000 versions of one origin is applied once and logged once', async () => {
  const counter = countingLogger();
  const victim = await cluster().node({ logger: counter.logger });
  const identity = await generateIdentity();
  const attacker = await cluster().node({ identity });
  await attacker.join(victim.inviteToken());
  await waitFor(() => victim.peer(attacker.endpointId) !== undefined, 'the attacker is a member');
  const base = victim.peer(attacker.endpointId)!.seq + 1_000_000n;
  const versions = [];
  for (let i = 1n; i <= 2_000n; i++) {
    versions.push(await forgeAnnouncement(identity, { meshId: victim.meshId, announcementSeq: base + i }));
  }
  // Forged signatures for the victim's other peer would be refused one by one: one line for all.
  const stranger = await generateIdentity();
  const bad = await forgeAnnouncement(stranger, { meshId: 'another-mesh' });
  let updates = 0;
  const off = victim.onPeerEvent((event) => {
    if (event.type === 'updated' && event.peer.endpointId === attacker.endpointId) updates++;
  });
  const warningsBefore = counter.warnings();
  await pushGossip(attacker, victim, [...versions, ...Array.from({ length: 500 }, () => bad)]);
  off();
  assert.ok(updates <= 2, `the victim applied ${updates} versions of one origin from one message`);
  assert.equal(victim.peer(attacker.endpointId)!.seq, base + 1n, 'the first version in the message stands');
  assert.ok(counter.warnings() - warningsBefore <= 1, `${counter.warnings() - warningsBefore} warn lines`);
});
