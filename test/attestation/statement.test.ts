import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AttestationError } from '../../src/attestation/errors.ts';
import { SoftwareKeyProvider } from '../../src/attestation/providers/software.ts';
import { ATTESTATION_DOMAIN, attestationSigningBytes } from '../../src/attestation/signing-bytes.ts';
import { buildStatement, encodeStatement, parseStatement } from '../../src/attestation/statement.ts';
import { silentLogger } from '../../src/log.ts';
import { sampleFacts, samplePosture, tempDir } from './helpers.ts';

describe('attestation statement', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let provider: SoftwareKeyProvider;
  before(async () => {
    dir = await tempDir();
    provider = await SoftwareKeyProvider.open({ dataDir: dir.path, logger: silentLogger() });
  });
  after(() => dir.cleanup());

  it('builds, encodes and parses back to the same statement', async () => {
    const facts = sampleFacts();
    const statement = await buildStatement(facts, provider);
    assert.equal(statement.attestation.keyStorage, 'software');
    assert.equal(statement.attestation.nodeEndpointId, facts.nodeEndpointId);
    assert.equal(statement.attestation.timestamp, new Date(facts.nowMs).toISOString());
    assert.equal(statement.attestation.sePublicKey, Buffer.from(provider.publicKey()).toString('base64'));
    const bytes = encodeStatement(statement);
    const parsed = parseStatement(bytes);
    assert.deepEqual(parsed, statement);
    assert.deepEqual(encodeStatement(parsed), bytes);
    const json = JSON.parse(new TextDecoder().decode(bytes));
    assert.deepEqual(Object.keys(json), ['attestation', 'signature']);
    assert.equal(json.attestation.se_public_key, statement.attestation.sePublicKey);
    assert.equal(json.attestation.posture.debugger_blocked, true);
  });

  it('takes top-level posture fields from the measured posture, never hard-coded', async () => {
    const posture = samplePosture({ secureBootEnabled: true, sipEnabled: true, platform: 'darwin' });
    const statement = await buildStatement(sampleFacts({ posture }), provider);
    assert.equal(statement.attestation.secureBootEnabled, true);
    assert.equal(statement.attestation.sipEnabled, true);
    assert.equal(statement.attestation.platform, 'darwin');
    const off = await buildStatement(sampleFacts(), provider);
    assert.equal(off.attestation.secureBootEnabled, false);
  });

  it('signing bytes start with the domain and change with every field', async () => {
    const statement = await buildStatement(sampleFacts(), provider);
    const bytes = attestationSigningBytes(statement.attestation);
    assert.equal(
      Buffer.from(bytes.subarray(0, ATTESTATION_DOMAIN.length)).toString('ascii'),
      ATTESTATION_DOMAIN,
    );
    const base = Buffer.from(bytes).toString('hex');
    const variants = [
      { ...statement.attestation, chipName: 'x' },
      { ...statement.attestation, unifiedMemoryBytes: 1 },
      { ...statement.attestation, keyStorage: 'tpm2' as const },
      { ...statement.attestation, posture: { ...statement.attestation.posture, debuggerBlocked: false } },
      { ...statement.attestation, posture: { ...statement.attestation.posture, unsafeEnvironment: ['A'] } },
      { ...statement.attestation, posture: { ...statement.attestation.posture, hardeningVersion: '2' } },
    ];
    for (const variant of variants) {
      assert.notEqual(Buffer.from(attestationSigningBytes(variant)).toString('hex'), base);
    }
  });

  it('refuses to sign facts a verifier would reject', async () => {
    await assert.rejects(
      buildStatement(sampleFacts({ nodeEndpointId: 'ABC' }), provider),
      (e: unknown) => e instanceof AttestationError && e.code === 'malformed',
    );
    await assert.rejects(
      buildStatement(sampleFacts({ inferencePublicKey: 'AAAA' }), provider),
      (e: unknown) => e instanceof AttestationError && e.code === 'malformed',
    );
  });

  describe('strict parsing', () => {
    let good: Record<string, unknown>;
    before(async () => {
      good = JSON.parse(
        new TextDecoder().decode(encodeStatement(await buildStatement(sampleFacts(), provider))),
      );
    });
    // biome-ignore lint/suspicious/noExplicitAny: the cases below poke at arbitrary JSON paths
    const mutate = (fn: (s: any) => void): Uint8Array => {
      const copy = structuredClone(good);
      fn(copy);
      return new TextEncoder().encode(JSON.stringify(copy));
    };
    const cases: Array<[string, () => Uint8Array]> = [
      ['empty', () => new Uint8Array(0)],
      ['not utf-8', () => Uint8Array.of(0xff, 0xfe, 0x7b)],
      ['not json', () => new TextEncoder().encode('{"attestation":')],
      ['array', () => new TextEncoder().encode('[]')],
      ['null', () => new TextEncoder().encode('null')],
      ['too large', () => new Uint8Array(20_000).fill(0x20)],
      ['unknown top key', () => mutate((s) => (s.extra = 1))],
      ['missing signature', () => mutate((s) => delete s.signature)],
      ['signature not base64', () => mutate((s) => (s.signature = '!!!!'))],
      ['signature not DER', () => mutate((s) => (s.signature = Buffer.alloc(64, 1).toString('base64')))],
      ['unknown attestation key', () => mutate((s) => (s.attestation.extra = true))],
      [
        '__proto__ key',
        () => new TextEncoder().encode(JSON.stringify(good).replace('"chip_name"', '"__proto__"')),
      ],
      ['missing field', () => mutate((s) => delete s.attestation.timestamp)],
      ['wrong type bool', () => mutate((s) => (s.attestation.sip_enabled = 'false'))],
      ['wrong type int', () => mutate((s) => (s.attestation.unified_memory_bytes = 1.5))],
      ['negative int', () => mutate((s) => (s.attestation.unified_memory_bytes = -1))],
      ['unsafe int', () => mutate((s) => (s.attestation.unified_memory_bytes = 2 ** 60))],
      [
        'upper-case endpoint',
        () => mutate((s) => (s.attestation.node_endpoint_id = s.attestation.node_endpoint_id.toUpperCase())),
      ],
      ['short endpoint', () => mutate((s) => (s.attestation.node_endpoint_id = 'abcd'))],
      ['bad inference key', () => mutate((s) => (s.attestation.inference_public_key = 'AAAA'))],
      [
        'se key wrong length',
        () => mutate((s) => (s.attestation.se_public_key = Buffer.alloc(33, 2).toString('base64'))),
      ],
      [
        'se key off curve',
        () =>
          mutate(
            (s) =>
              (s.attestation.se_public_key = Buffer.concat([Buffer.of(4), Buffer.alloc(64, 1)]).toString(
                'base64',
              )),
          ),
      ],
      ['bad binary hash', () => mutate((s) => (s.attestation.binary_hash = 'xyz'))],
      ['bad timestamp', () => mutate((s) => (s.attestation.timestamp = 'yesterday'))],
      ['timestamp month 13', () => mutate((s) => (s.attestation.timestamp = '2026-13-01T00:00:00Z'))],
      ['bad key storage', () => mutate((s) => (s.attestation.key_storage = 'hsm'))],
      ['posture not object', () => mutate((s) => (s.attestation.posture = []))],
      ['posture missing field', () => mutate((s) => delete s.attestation.posture.ptrace_scope)],
      ['posture unknown field', () => mutate((s) => (s.attestation.posture.x = 1))],
      [
        'posture env not array',
        () => mutate((s) => (s.attestation.posture.unsafe_environment = 'LD_PRELOAD')),
      ],
      ['posture env bad name', () => mutate((s) => (s.attestation.posture.unsafe_environment = ['A=B']))],
      ['posture boundary', () => mutate((s) => (s.attestation.posture.plaintext_boundary = 'cloud'))],
      ['posture ptrace', () => mutate((s) => (s.attestation.posture.ptrace_scope = '9'))],
      ['control chars', () => mutate((s) => (s.attestation.chip_name = 'a\u0000b'))],
      ['long text', () => mutate((s) => (s.attestation.chip_name = 'a'.repeat(300)))],
      [
        'inconsistent sip',
        () => mutate((s) => (s.attestation.sip_enabled = !s.attestation.posture.sip_enabled)),
      ],
      ['inconsistent hash', () => mutate((s) => (s.attestation.binary_hash = 'cd'.repeat(32)))],
    ];
    for (const [name, make] of cases) {
      it(`rejects: ${name}`, () => {
        assert.throws(
          () => parseStatement(make()),
          (e: unknown) => e instanceof AttestationError && e.code === 'malformed',
        );
      });
    }
  });
});
