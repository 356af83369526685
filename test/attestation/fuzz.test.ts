import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { pointFromKeyObject } from '../../src/attestation/ecdsa.ts';
import { AttestationError } from '../../src/attestation/errors.ts';
import { PinStore } from '../../src/attestation/pins.ts';
import { parseAttestationPolicy } from '../../src/attestation/policy.ts';
import { buildStatement, encodeStatement, parseStatement } from '../../src/attestation/statement.ts';
import { verifyAttestation } from '../../src/attestation/verify.ts';
import { ConfigError } from '../../src/errors.ts';
import { mulberry32 } from '../helpers/prng.ts';
import { sampleFacts, tempDir } from './helpers.ts';

/** Deterministic randomness so a failure is reproducible from the printed seed. */
function rng(seed: number) {
  const next = mulberry32(seed);
  return { next, int: (n: number) => Math.floor(next() * n) };
}

const SEED = Number(process.env.FUZZ_SEED ?? 20261121);
const JSON_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  2 ** 64,
  '',
  'x',
  '\u0000',
  [],
  {},
  [1],
  { a: 1 },
  'A'.repeat(400),
];

describe('fuzz: parseStatement / verifyAttestation / parseAttestationPolicy', () => {
  it('random and mutated inputs only ever produce typed errors', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const point = pointFromKeyObject(privateKey);
    const provider = {
      kind: 'tpm2' as const,
      hardware: true,
      publicKey: () => point.slice(),
      sign: async (data: Uint8Array) =>
        new Uint8Array(sign('sha256', data, { key: privateKey, dsaEncoding: 'der' })),
    };
    const facts = sampleFacts();
    const good = encodeStatement(await buildStatement(facts, provider));
    const goodJson = JSON.parse(new TextDecoder().decode(good));
    const dir = await tempDir();
    const pins = await PinStore.open({ dataDir: dir.path });
    const r = rng(SEED);
    const deadline = Date.now() + 20_000; // bound the run even on a slow machine
    let cases = 0;
    let accepted = 0;
    const mutations: Array<() => Uint8Array> = [
      // Random bytes.
      () => Uint8Array.from({ length: r.int(300) }, () => r.int(256)),
      // Byte flips / truncation / duplication of a valid statement.
      () => {
        const b = Uint8Array.from(good);
        for (let i = 0, n = 1 + r.int(4); i < n; i++) b[r.int(b.length)] = r.int(256);
        return b;
      },
      () => good.subarray(0, r.int(good.length)),
      () => new Uint8Array(Buffer.concat([good, good.subarray(0, r.int(50))])),
      // Structured: replace one field anywhere in the JSON tree with a random JSON value.
      () => {
        const copy = structuredClone(goodJson);
        const target = r.int(3) === 0 ? copy : r.int(2) === 0 ? copy.attestation : copy.attestation.posture;
        const keys = Object.keys(target);
        const key = r.int(5) === 0 ? `k${r.int(9)}` : keys[r.int(keys.length)]!;
        if (r.int(6) === 0) delete target[key];
        else target[key] = JSON_VALUES[r.int(JSON_VALUES.length)];
        return new TextEncoder().encode(JSON.stringify(copy));
      },
      // Valid JSON, wrong signature bits.
      () => {
        const copy = structuredClone(goodJson);
        const sig = Buffer.from(copy.signature, 'base64');
        const at = r.int(sig.length);
        sig[at] = (sig[at] ?? 0) ^ (1 << r.int(8));
        copy.signature = sig.toString('base64');
        return new TextEncoder().encode(JSON.stringify(copy));
      },
    ];
    try {
      while (cases < 5000 && Date.now() < deadline) {
        const input = mutations[r.int(mutations.length)]!();
        cases++;
        try {
          parseStatement(input);
          accepted++;
        } catch (error) {
          assert.ok(error instanceof AttestationError, `seed ${SEED} case ${cases}: ${String(error)}`);
        }
        const verdict = await verifyAttestation({
          blob: input,
          peerEndpointId: facts.nodeEndpointId,
          announcedInferenceKey: facts.inferencePublicKey,
          now: facts.nowMs,
          policy: { minimumTier: 'self-signed', requiredPosture: {} },
          pins,
        });
        assert.equal(typeof verdict.ok, 'boolean');
        if (verdict.ok) assert.equal(verdict.keyStorage, 'tpm2');
        else assert.match(verdict.reason ?? '', /^[a-z_]+: /);
        if (verdict.ok) assert.ok(verdict.pinned);
      }
    } finally {
      await dir.cleanup();
    }
    assert.ok(cases >= 1000, `ran only ${cases} cases`);
    assert.ok(accepted < cases, 'mutations must produce rejections');
  });

  it('random policy documents only ever produce ConfigError', () => {
    const r = rng(SEED + 1);
    const keys = [
      'minimumTier',
      'requiredPosture',
      'allowedBinaryHashes',
      'pinnedKeys',
      'trustedTpmRoots',
      'x',
    ];
    for (let i = 0; i < 3000; i++) {
      const doc: Record<string, unknown> = {};
      for (let j = r.int(4); j > 0; j--)
        doc[keys[r.int(keys.length)]!] = JSON_VALUES[r.int(JSON_VALUES.length)];
      let text = JSON.stringify(doc);
      if (r.int(4) === 0) text = text.slice(0, r.int(text.length + 1));
      try {
        parseAttestationPolicy(text);
      } catch (error) {
        assert.ok(error instanceof ConfigError, `seed ${SEED} policy case ${i}: ${String(error)}`);
      }
    }
  });
});
