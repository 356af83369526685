// Regenerates test/fixtures/attestation-vectors.json (run: node test/attestation/generate-vectors.ts).
// ECDSA is randomized, so signatures change on every run; the signing bytes do not.
import { createECDH, createHash, createPrivateKey, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AttestationKeyProvider } from '../../src/attestation/providers/types.ts';
import { attestationSigningBytes } from '../../src/attestation/signing-bytes.ts';
import { buildStatement, encodeStatement, type StatementFacts } from '../../src/attestation/statement.ts';
import { samplePosture } from './helpers.ts';

/** The fixed, PUBLIC test key: never use it for anything but these vectors. */
export function vectorTestKey() {
  const d = createHash('sha256').update('mesh-llm attestation test vector key v1').digest();
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(d);
  const point = ecdh.getPublicKey(null, 'uncompressed');
  const key = createPrivateKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      d: d.toString('base64url'),
      x: point.subarray(1, 33).toString('base64url'),
      y: point.subarray(33).toString('base64url'),
    },
    format: 'jwk',
  });
  return { d, point: new Uint8Array(point), key };
}

function fixedProvider(kind: 'software' | 'tpm2'): AttestationKeyProvider {
  const { point, key } = vectorTestKey();
  return {
    kind,
    hardware: kind !== 'software',
    publicKey: () => point.slice(),
    sign: async (data) => new Uint8Array(sign('sha256', data, { key, dsaEncoding: 'der' })),
  };
}

const cases: Array<{ name: string; storage: 'software' | 'tpm2'; facts: StatementFacts }> = [
  {
    name: 'software key, linux host, minimal posture',
    storage: 'software',
    facts: {
      chipName: 'AMD EPYC 7B13',
      hardwareModel: 'x86_64',
      unifiedMemoryBytes: 0,
      nodeEndpointId: '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff',
      inferencePublicKey: Buffer.alloc(32, 7).toString('base64'),
      version: '0.1.0',
      posture: samplePosture({ binaryHash: '' }),
      nowMs: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
    },
  },
  {
    name: 'tpm2 claim, unicode chip name, unsafe environment list',
    storage: 'tpm2',
    facts: {
      chipName: 'Apple M3 Max — テスト',
      hardwareModel: 'Mac15,9',
      unifiedMemoryBytes: 137438953472,
      nodeEndpointId: 'ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100',
      inferencePublicKey: Buffer.from(Array.from({ length: 32 }, (_, i) => i)).toString('base64'),
      version: '1.2.3-beta.1',
      posture: samplePosture({
        platform: 'darwin',
        sipEnabled: true,
        sipKnown: true,
        rdmaDisabled: true,
        rdmaKnown: true,
        secureBootEnabled: true,
        startedWithUnsafeEnvironment: true,
        reexecutedClean: true,
        unsafeEnvironment: ['DYLD_INSERT_LIBRARIES', 'NODE_OPTIONS'],
        ptraceScope: '1',
        binaryHash: '0f'.repeat(32),
        plaintextBoundary: 'external-backend',
        hardeningVersion: '2',
      }),
      nowMs: Date.UTC(2026, 10, 21, 19, 30, 0, 0),
    },
  },
];

export async function generateVectors() {
  const vectors = [];
  for (const c of cases) {
    const statement = await buildStatement(c.facts, fixedProvider(c.storage));
    vectors.push({
      name: c.name,
      statement_json: new TextDecoder().decode(encodeStatement(statement)),
      signing_bytes_hex: Buffer.from(attestationSigningBytes(statement.attestation)).toString('hex'),
      signature_b64: statement.signature,
    });
  }
  const { d, point } = vectorTestKey();
  return {
    description:
      'mesh-llm hardware attestation v1 test vectors (SPEC §6.2). For each vector: parse statement_json, ' +
      'compute the canonical signing bytes (must equal signing_bytes_hex), and verify signature_b64 (DER ECDSA ' +
      'P-256 over SHA-256 of the signing bytes) with public_key_b64. The key is a published TEST key.',
    public_key_b64: Buffer.from(point).toString('base64'),
    private_key_d_hex: d.toString('hex'),
    vectors,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = fileURLToPath(new URL('../fixtures/attestation-vectors.json', import.meta.url));
  writeFileSync(out, `${JSON.stringify(await generateVectors(), null, 2)}\n`);
  console.log(`wrote ${out}`);
}
