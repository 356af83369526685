import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PeerRecord } from '../../src/mesh/types.ts';
import { createHostSecurity, type PeerTrust } from '../../src/node/host-security.ts';

const rooted: PeerTrust = {
  qualifies: () => ({ ok: true }),
  rank: () => 1,
};
const peer = { endpointId: 'host', announcement: {} } as unknown as PeerRecord;

test('a proven tier makes a host preferred only under an attestation policy (SPEC §6.5)', () => {
  assert.equal(createHostSecurity(rooted, { e2e: true, attestationPolicy: false }).preference(peer), 0);
  assert.equal(createHostSecurity(rooted, { e2e: true, attestationPolicy: true }).preference(peer), 1);
  assert.equal(createHostSecurity(undefined, { e2e: true, attestationPolicy: true }).preference(peer), 0);
});
