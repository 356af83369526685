import assert from 'node:assert/strict';
import { createECDH, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { PinStore } from '../../src/attestation/pins.ts';
import { attestationSigningBytes } from '../../src/attestation/signing-bytes.ts';
import { encodeStatement, parseStatement } from '../../src/attestation/statement.ts';
import { verifyAttestation } from '../../src/attestation/verify.ts';
import { tempDir } from './helpers.ts';

interface VectorFile {
  public_key_b64: string;
  private_key_d_hex: string;
  vectors: Array<{ name: string; statement_json: string; signing_bytes_hex: string; signature_b64: string }>;
}
const file = JSON.parse(
  readFileSync(new URL('../fixtures/attestation-vectors.json', import.meta.url), 'utf8'),
) as VectorFile;

// An independent re-statement of the documented encoding (docs/attestation.md), written
// from the JSON alone, so the fixture pins the format rather than the implementation.
const ORDER: Array<[string, 's' | 'u' | 'b']> = [
  ['chip_name', 's'],
  ['hardware_model', 's'],
  ['unified_memory_bytes', 'u'],
  ['sip_enabled', 'b'],
  ['secure_boot_enabled', 'b'],
  ['rdma_disabled', 'b'],
  ['node_endpoint_id', 's'],
  ['inference_public_key', 's'],
  ['se_public_key', 's'],
  ['binary_hash', 's'],
  ['timestamp', 's'],
  ['version', 's'],
  ['platform', 's'],
  ['key_storage', 's'],
];
const POSTURE_ORDER: Array<[string, 's' | 'b' | 'a']> = [
  ['platform', 's'],
  ['sip_enabled', 'b'],
  ['sip_known', 'b'],
  ['rdma_disabled', 'b'],
  ['rdma_known', 'b'],
  ['secure_boot_enabled', 'b'],
  ['debugger_blocked', 'b'],
  ['core_dumps_disabled', 'b'],
  ['inspector_closed', 'b'],
  ['environment_clean', 'b'],
  ['started_with_unsafe_environment', 'b'],
  ['reexecuted_clean', 'b'],
  ['unsafe_environment', 'a'],
  ['ptrace_scope', 's'],
  ['binary_hash', 's'],
  ['plaintext_boundary', 's'],
  ['hardening_version', 's'],
];
function independentSigningBytes(attestation: Record<string, unknown>): Buffer {
  const parts: Buffer[] = [Buffer.from('mesh-llm-hardware-attestation-v1:', 'ascii')];
  const str = (v: string) => {
    const b = Buffer.from(v, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    parts.push(len, b);
  };
  const put = (type: string, v: unknown) => {
    if (type === 's') str(v as string);
    else if (type === 'b') parts.push(Buffer.of(v ? 1 : 0));
    else if (type === 'u') {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt(v as number));
      parts.push(b);
    } else {
      const n = Buffer.alloc(4);
      n.writeUInt32LE((v as string[]).length);
      parts.push(n);
      for (const item of v as string[]) str(item);
    }
  };
  for (const [k, t] of ORDER) put(t, attestation[k]);
  for (const [k, t] of POSTURE_ORDER) put(t, (attestation.posture as Record<string, unknown>)[k]);
  return Buffer.concat(parts);
}

describe('attestation test vectors', () => {
  const point = Buffer.from(file.public_key_b64, 'base64');
  const publicKey = createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: point.subarray(1, 33).toString('base64url'),
      y: point.subarray(33).toString('base64url'),
    },
    format: 'jwk',
  });

  it('the published private scalar matches the public key', () => {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(file.private_key_d_hex, 'hex'));
    assert.deepEqual(ecdh.getPublicKey(null, 'uncompressed'), point);
  });

  assert.ok(file.vectors.length >= 2);
  for (const vector of file.vectors) {
    it(`vector: ${vector.name}`, async () => {
      const bytes = new TextEncoder().encode(vector.statement_json);
      const statement = parseStatement(bytes);
      const signing = Buffer.from(attestationSigningBytes(statement.attestation)).toString('hex');
      assert.equal(signing, vector.signing_bytes_hex);
      const json = JSON.parse(vector.statement_json);
      assert.equal(independentSigningBytes(json.attestation).toString('hex'), vector.signing_bytes_hex);
      assert.equal(json.signature, vector.signature_b64);
      const sig = Buffer.from(vector.signature_b64, 'base64');
      assert.equal(
        verify(
          'sha256',
          Buffer.from(vector.signing_bytes_hex, 'hex'),
          { key: publicKey, dsaEncoding: 'der' },
          sig,
        ),
        true,
      );
      assert.equal(
        Buffer.from(encodeStatement(statement)).toString('utf8'),
        vector.statement_json,
        'canonical JSON',
      );
      const dir = await tempDir();
      try {
        const verdict = await verifyAttestation({
          blob: bytes,
          peerEndpointId: statement.attestation.nodeEndpointId,
          announcedInferenceKey: statement.attestation.inferencePublicKey,
          now: Date.parse(statement.attestation.timestamp),
          policy: { minimumTier: 'self-signed', requiredPosture: {} },
          pins: await PinStore.open({ dataDir: dir.path }),
        });
        assert.equal(verdict.ok, true, verdict.reason);
        assert.equal(
          verdict.tier,
          statement.attestation.keyStorage === 'software' ? 'self-signed' : 'hardware-claimed',
        );
      } finally {
        await dir.cleanup();
      }
    });
  }
});
