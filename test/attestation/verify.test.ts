import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, beforeEach, describe, it } from 'node:test';
import { pointFromKeyObject } from '../../src/attestation/ecdsa.ts';
import { PinStore } from '../../src/attestation/pins.ts';
import { type AttestationPolicy, defaultAttestationPolicy } from '../../src/attestation/policy.ts';
import type { AttestationKeyProvider, KeyStorage } from '../../src/attestation/providers/types.ts';
import { buildStatement, encodeStatement, type StatementFacts } from '../../src/attestation/statement.ts';
import {
  AttestationVerifierCache,
  MAX_STATEMENT_AGE_MS,
  type VerifyAttestationInput,
  verifyAttestation,
} from '../../src/attestation/verify.ts';
import { sampleFacts, samplePosture, tempDir } from './helpers.ts';

/** An in-memory key that claims any storage (hardware claims are exactly that: claims). */
function memoryProvider(kind: KeyStorage = 'software'): AttestationKeyProvider {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const point = pointFromKeyObject(privateKey);
  return {
    kind,
    hardware: kind !== 'software',
    publicKey: () => point.slice(),
    sign: async (data) => new Uint8Array(sign('sha256', data, { key: privateKey, dsaEncoding: 'der' })),
  };
}

const selfSignedPolicy = (): AttestationPolicy => ({
  ...defaultAttestationPolicy(),
  minimumTier: 'self-signed',
});

describe('verifyAttestation', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let pins: PinStore;
  let facts: StatementFacts;
  let provider: AttestationKeyProvider;
  let blob: Uint8Array;

  before(async () => {
    dir = await tempDir();
  });
  after(() => dir.cleanup());
  beforeEach(async () => {
    pins = await PinStore.open({ dataDir: dir.path, path: `${dir.path}/pins-${Math.random()}.json` });
    facts = sampleFacts();
    provider = memoryProvider('software');
    blob = encodeStatement(await buildStatement(facts, provider));
  });

  const input = (overrides: Partial<VerifyAttestationInput> = {}): VerifyAttestationInput => ({
    blob,
    peerEndpointId: facts.nodeEndpointId,
    announcedInferenceKey: facts.inferencePublicKey,
    now: facts.nowMs + 1000,
    policy: selfSignedPolicy(),
    pins,
    ...overrides,
  });

  it('accepts a valid software statement as self-signed and pins its key', async () => {
    const verdict = await verifyAttestation(input());
    assert.equal(verdict.ok, true, verdict.reason);
    assert.equal(verdict.tier, 'self-signed');
    assert.equal(verdict.keyStorage, 'software');
    assert.equal(verdict.pinned, true);
    assert.match(verdict.keyFingerprint ?? '', /^[0-9a-f]{16}$/);
    assert.equal(verdict.posture?.debuggerBlocked, true);
    assert.equal(verdict.sePublicKey, Buffer.from(provider.publicKey()).toString('base64'));
    assert.equal(pins.lookup(facts.nodeEndpointId)?.key, verdict.sePublicKey);
    // Persisted, and readable by a fresh store.
    const reopened = await PinStore.open({ dataDir: dir.path, path: pins.path });
    assert.equal(reopened.lookup(facts.nodeEndpointId)?.key, verdict.sePublicKey);
  });

  it('reports a software key below the default minimum (hardware-claimed)', async () => {
    const verdict = await verifyAttestation(input({ policy: defaultAttestationPolicy() }));
    assert.equal(verdict.ok, false);
    assert.equal(verdict.tier, 'self-signed');
    assert.equal(verdict.code, 'tier_below_minimum');
  });

  it('reports hardware-claimed for a key that claims TPM storage, never hardware-rooted', async () => {
    const hw = memoryProvider('tpm2');
    const hwBlob = encodeStatement(await buildStatement(facts, hw));
    const verdict = await verifyAttestation(input({ blob: hwBlob, policy: defaultAttestationPolicy() }));
    assert.equal(verdict.ok, true, verdict.reason);
    assert.equal(verdict.tier, 'hardware-claimed');
    const rooted = await verifyAttestation(
      input({ blob: hwBlob, policy: { ...defaultAttestationPolicy(), minimumTier: 'hardware-rooted' } }),
    );
    assert.equal(rooted.ok, false);
    assert.equal(rooted.tier, 'hardware-claimed');
    assert.equal(rooted.code, 'tier_below_minimum');
  });

  it('missing statement is tier none', async () => {
    for (const missing of [undefined, new Uint8Array(0)]) {
      const verdict = await verifyAttestation(input({ blob: missing }));
      assert.equal(verdict.tier, 'none');
      assert.equal(verdict.ok, false);
      assert.equal(verdict.code, 'missing');
    }
  });

  it('rejects a tampered field', async () => {
    const text = new TextDecoder().decode(blob).replace('"chip_name":"Test CPU"', '"chip_name":"Test CPV"');
    const verdict = await verifyAttestation(input({ blob: new TextEncoder().encode(text) }));
    assert.equal(verdict.code, 'bad_signature');
    assert.equal(verdict.tier, 'none');
    assert.equal(verdict.posture, undefined, 'no unauthenticated posture is reported');
    const json = JSON.parse(new TextDecoder().decode(blob));
    json.attestation.posture.debugger_blocked = false;
    const v2 = await verifyAttestation(input({ blob: new TextEncoder().encode(JSON.stringify(json)) }));
    assert.equal(v2.code, 'bad_signature');
  });

  it('rejects a statement for another endpoint', async () => {
    const verdict = await verifyAttestation(input({ peerEndpointId: 'ab'.repeat(32) }));
    assert.equal(verdict.code, 'endpoint_mismatch');
    assert.equal(verdict.ok, false);
    assert.equal(verdict.tier, 'none');
  });

  it('accepts the endpoint id in upper case from the caller', async () => {
    const verdict = await verifyAttestation(input({ peerEndpointId: facts.nodeEndpointId.toUpperCase() }));
    assert.equal(verdict.ok, true, verdict.reason);
  });

  it('rejects a wrong or missing inference key', async () => {
    const wrong = await verifyAttestation(
      input({ announcedInferenceKey: Buffer.alloc(32, 9).toString('base64') }),
    );
    assert.equal(wrong.code, 'inference_key_mismatch');
    const missing = await verifyAttestation(input({ announcedInferenceKey: undefined }));
    assert.equal(missing.code, 'inference_key_mismatch');
  });

  it('rejects a posture that misses a policy requirement', async () => {
    const weak = memoryProvider('software');
    const weakBlob = encodeStatement(
      await buildStatement({ ...facts, posture: samplePosture({ debuggerBlocked: false }) }, weak),
    );
    const policy: AttestationPolicy = {
      ...selfSignedPolicy(),
      requiredPosture: { debuggerBlocked: true, plaintextBoundary: 'in-process' },
    };
    const verdict = await verifyAttestation(input({ blob: weakBlob, policy }));
    assert.equal(verdict.code, 'posture');
    assert.match(verdict.reason ?? '', /debuggerBlocked/);
    const boundary = await verifyAttestation(
      input({
        policy: { ...selfSignedPolicy(), requiredPosture: { plaintextBoundary: 'external-backend' } },
      }),
    );
    assert.equal(boundary.code, 'posture');
    const fine = await verifyAttestation(input({ policy }));
    assert.equal(fine.ok, true, fine.reason);
  });

  it('enforces freshness: 30 s into the future, 660 s into the past', async () => {
    assert.equal((await verifyAttestation(input({ now: facts.nowMs - 29_000 }))).ok, true);
    assert.equal((await verifyAttestation(input({ now: facts.nowMs - 31_000 }))).code, 'timestamp_future');
    assert.equal((await verifyAttestation(input({ now: facts.nowMs + 659_000 }))).ok, true);
    const expired = await verifyAttestation(input({ now: facts.nowMs + MAX_STATEMENT_AGE_MS + 1 }));
    assert.equal(expired.code, 'expired');
    assert.equal(expired.ok, false);
  });

  it('rejects a replayed old statement even after newer ones were accepted', async () => {
    const old = blob;
    const later = facts.nowMs + 20 * 60_000;
    const fresh = encodeStatement(await buildStatement({ ...facts, nowMs: later }, provider));
    assert.equal((await verifyAttestation(input({ blob: fresh, now: later }))).ok, true);
    const replay = await verifyAttestation(input({ blob: old, now: later }));
    assert.equal(replay.code, 'expired');
  });

  it('enforces the binary hash allowlist when the policy names one', async () => {
    const blocked = await verifyAttestation(
      input({ policy: { ...selfSignedPolicy(), allowedBinaryHashes: ['cd'.repeat(32)] } }),
    );
    assert.equal(blocked.code, 'binary_hash');
    const allowed = await verifyAttestation(
      input({ policy: { ...selfSignedPolicy(), allowedBinaryHashes: ['cd'.repeat(32), 'ab'.repeat(32)] } }),
    );
    assert.equal(allowed.ok, true, allowed.reason);
  });

  it('fails loudly when the key of a pinned endpoint changes, until the pin is reset', async () => {
    assert.equal((await verifyAttestation(input())).ok, true);
    const rotated = memoryProvider('software');
    const rotatedBlob = encodeStatement(await buildStatement(facts, rotated));
    const verdict = await verifyAttestation(input({ blob: rotatedBlob }));
    assert.equal(verdict.code, 'pin_mismatch');
    assert.equal(verdict.ok, false);
    assert.equal(verdict.tier, 'none');
    assert.equal(verdict.pinned, false);
    // The original pin is untouched.
    assert.equal(
      pins.lookup(facts.nodeEndpointId)?.key,
      Buffer.from(provider.publicKey()).toString('base64'),
    );
    assert.equal(await pins.reset(facts.nodeEndpointId), true);
    const retrusted = await verifyAttestation(input({ blob: rotatedBlob }));
    assert.equal(retrusted.ok, true, retrusted.reason);
    assert.equal(pins.lookup(facts.nodeEndpointId)?.key, Buffer.from(rotated.publicKey()).toString('base64'));
  });

  it('rejects a forged statement (valid signature by another key claiming the endpoint)', async () => {
    assert.equal((await verifyAttestation(input())).ok, true);
    const attacker = memoryProvider('tpm2'); // claims hardware, too
    const forged = encodeStatement(await buildStatement({ ...facts, nowMs: facts.nowMs + 5000 }, attacker));
    const verdict = await verifyAttestation(input({ blob: forged, now: facts.nowMs + 6000 }));
    assert.equal(verdict.code, 'pin_mismatch');
    assert.equal(verdict.tier, 'none');
  });

  it('lets operator pins from the policy win over TOFU pins', async () => {
    const mine = Buffer.from(provider.publicKey()).toString('base64');
    const other = Buffer.from(memoryProvider().publicKey()).toString('base64');
    const ok = await verifyAttestation(
      input({ policy: { ...selfSignedPolicy(), pinnedKeys: { [facts.nodeEndpointId]: mine } } }),
    );
    assert.equal(ok.ok, true, ok.reason);
    assert.equal(ok.pinned, true);
    assert.equal(pins.lookup(facts.nodeEndpointId), undefined, 'operator pins are not copied into the store');
    const mismatch = await verifyAttestation(
      input({ policy: { ...selfSignedPolicy(), pinnedKeys: { [facts.nodeEndpointId]: other } } }),
    );
    assert.equal(mismatch.code, 'pin_mismatch');
    // Even when the TOFU store holds the statement's key, the operator pin decides.
    await pins.pin(facts.nodeEndpointId, mine, 0);
    const still = await verifyAttestation(
      input({ policy: { ...selfSignedPolicy(), pinnedKeys: { [facts.nodeEndpointId]: other } } }),
    );
    assert.equal(still.code, 'pin_mismatch');
  });

  it('never pins a key from a statement that failed an earlier check', async () => {
    await verifyAttestation(input({ now: facts.nowMs + MAX_STATEMENT_AGE_MS + 10 }));
    await verifyAttestation(input({ peerEndpointId: 'cd'.repeat(32) }));
    assert.equal(pins.list().length, 0);
  });

  it('racing statements with different keys for a new endpoint pin only one', async () => {
    const a = memoryProvider();
    const b = memoryProvider();
    const [va, vb] = await Promise.all([
      verifyAttestation(input({ blob: encodeStatement(await buildStatement(facts, a)) })),
      verifyAttestation(input({ blob: encodeStatement(await buildStatement(facts, b)) })),
    ]);
    assert.equal([va, vb].filter((v) => v.ok).length, 1);
    assert.equal([va, vb].filter((v) => v.code === 'pin_mismatch').length, 1);
  });
});

describe('AttestationVerifierCache', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir();
  });
  after(() => dir.cleanup());

  it('caches per (endpoint, blob), expires with the freshness window, and drops entries on pin reset', async () => {
    const pins = await PinStore.open({ dataDir: dir.path });
    const facts = sampleFacts();
    const provider = memoryProvider('tpm2');
    const blob = encodeStatement(await buildStatement(facts, provider));
    let now = facts.nowMs + 1000;
    const cache = new AttestationVerifierCache({
      policy: defaultAttestationPolicy(),
      pins,
      clock: () => now,
    });
    const request = {
      blob,
      peerEndpointId: facts.nodeEndpointId,
      announcedInferenceKey: facts.inferencePublicKey,
    };

    const [first, concurrent] = await Promise.all([cache.verify(request), cache.verify(request)]);
    assert.equal(first.ok, true, first.reason);
    assert.equal(concurrent.ok, true);
    const second = await cache.verify(request);
    assert.equal(second.ok, true);
    assert.equal(second, await cache.verify(request), 'a cache hit returns the cached verdict');
    now += 10_000;
    assert.equal((await cache.verify(request)).verifiedAtMs, second.verifiedAtMs, 'still cached');

    // A different announced inference key is a different cache entry.
    const wrongKey = await cache.verify({
      ...request,
      announcedInferenceKey: Buffer.alloc(32).toString('base64'),
    });
    assert.equal(wrongKey.code, 'inference_key_mismatch');

    // Past the window the cached success is not reused.
    now = facts.nowMs + MAX_STATEMENT_AGE_MS + 1;
    assert.equal((await cache.verify(request)).code, 'expired');

    // Pin reset invalidates.
    now = facts.nowMs + 1000;
    cache.invalidate();
    const rotated = memoryProvider('tpm2');
    const rotatedBlob = encodeStatement(await buildStatement(facts, rotated));
    assert.equal((await cache.verify({ ...request, blob: rotatedBlob })).code, 'pin_mismatch');
    assert.equal(await cache.resetPin(facts.nodeEndpointId), true);
    assert.equal((await cache.verify({ ...request, blob: rotatedBlob })).ok, true);
    assert.equal((await cache.verify(request)).code, 'pin_mismatch', 'the old key is now the stranger');
    cache.close();
    const stored = JSON.parse(await readFile(pins.path, 'utf8'));
    assert.equal(stored.pins[facts.nodeEndpointId].key, Buffer.from(rotated.publicKey()).toString('base64'));
  });

  it('stays bounded', async () => {
    const pins = await PinStore.open({ dataDir: dir.path, path: `${dir.path}/bounded.json` });
    const cache = new AttestationVerifierCache({ policy: defaultAttestationPolicy(), pins, maxEntries: 5 });
    for (let i = 0; i < 20; i++) {
      await cache.verify({
        blob: Uint8Array.of(i + 1),
        peerEndpointId: 'ab'.repeat(32),
        announcedInferenceKey: undefined,
      });
    }
    assert.equal(cache.size, 5);
    cache.close();
  });
});
