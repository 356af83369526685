import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { publicKeyFromPoint, verifyP256 } from '../../src/attestation/ecdsa.ts';
import { PinStore } from '../../src/attestation/pins.ts';
import { defaultAttestationPolicy } from '../../src/attestation/policy.ts';
import { selectAttestationKeyProvider } from '../../src/attestation/providers/select.ts';
import { Tpm2KeyProvider, tpmSignatureToDer } from '../../src/attestation/providers/tpm2.ts';
import { buildStatement, encodeStatement } from '../../src/attestation/statement.ts';
import { verifyAttestation } from '../../src/attestation/verify.ts';
import { ConfigError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { type SwtpmHandle, startSwtpm } from '../helpers/swtpm.ts';
import { sampleFacts, tempDir } from './helpers.ts';

describe('tpm2 signature conversion', () => {
  const r = Buffer.alloc(32, 0x81);
  const s = Buffer.concat([Buffer.alloc(1), Buffer.alloc(31, 0x11)]);
  const expectedDer = Buffer.concat([
    Buffer.from([0x30, 0x44, 0x02, 0x21, 0x00]),
    r,
    Buffer.from([0x02, 0x1f]),
    s.subarray(1),
  ]);
  it('converts TPMT_SIGNATURE, raw r||s and DER', () => {
    const tss = Buffer.concat([
      Buffer.from([0x00, 0x18, 0x00, 0x0b, 0x00, 0x20]),
      r,
      Buffer.from([0x00, 0x20]),
      s,
    ]);
    assert.deepEqual(Buffer.from(tpmSignatureToDer(tss)), expectedDer);
    assert.deepEqual(Buffer.from(tpmSignatureToDer(Buffer.concat([r, s]))), expectedDer);
    assert.deepEqual(Buffer.from(tpmSignatureToDer(expectedDer)), expectedDer);
  });
  it('rejects malformed TPM signatures', () => {
    assert.throws(
      () => tpmSignatureToDer(Buffer.from([0x00, 0x18, 0x00, 0x04, 0x00, 0x01, 0x01, 0x00])),
      /SHA-256/,
    );
    assert.throws(
      () => tpmSignatureToDer(Buffer.from([0x00, 0x18, 0x00, 0x0b, 0x00, 0x40, 0x01])),
      /TPM signature/,
    );
    assert.throws(() => tpmSignatureToDer(Buffer.alloc(10)), /unrecognised/);
  });
});

// These tests run against a real software TPM. They must not be skipped: startSwtpm() fails
// loudly when swtpm or tpm2-tools are missing.
describe('tpm2 provider on swtpm', () => {
  let tpm: SwtpmHandle;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const env = () => ({ ...process.env, TPM2TOOLS_TCTI: tpm.tcti });
  before(async () => {
    tpm = await startSwtpm();
    dir = await tempDir();
  });
  after(async () => {
    await tpm?.stop();
    await dir?.cleanup();
  });

  it('signs a statement in the TPM that verifies as hardware-claimed', async () => {
    const dataDir = join(dir.path, 'node');
    const provider = await Tpm2KeyProvider.open({ dataDir, logger: silentLogger(), env: env() });
    try {
      assert.equal(provider.kind, 'tpm2');
      assert.equal(provider.hardware, true);
      const data = Buffer.from('attest me');
      const signature = await provider.sign(data);
      assert.equal(verifyP256(publicKeyFromPoint(provider.publicKey()), data, signature), true);
      const facts = sampleFacts();
      const blob = encodeStatement(await buildStatement(facts, provider));
      const verdict = await verifyAttestation({
        blob,
        peerEndpointId: facts.nodeEndpointId,
        announcedInferenceKey: facts.inferencePublicKey,
        now: facts.nowMs,
        policy: defaultAttestationPolicy(),
        pins: await PinStore.open({ dataDir }),
      });
      assert.equal(verdict.ok, true, verdict.reason);
      assert.equal(verdict.tier, 'hardware-claimed');
      assert.equal(verdict.keyStorage, 'tpm2');
      // Many signatures in a row: transient object slots must not leak.
      const many = await Promise.all(Array.from({ length: 6 }, (_, i) => provider.sign(Buffer.from([i]))));
      many.forEach((sig, i) => {
        assert.equal(verifyP256(publicKeyFromPoint(provider.publicKey()), Buffer.from([i]), sig), true);
      });
    } finally {
      await provider.close();
    }
  });

  it('keeps the same key across provider restarts and a TPM restart', async () => {
    const dataDir = join(dir.path, 'restart');
    const first = await Tpm2KeyProvider.open({ dataDir, logger: silentLogger(), env: env() });
    const key = first.publicKey();
    await first.close();
    const second = await Tpm2KeyProvider.open({ dataDir, logger: silentLogger(), env: env() });
    assert.deepEqual(second.publicKey(), key);
    await second.close();
    await tpm.restart(); // power cycle: saved contexts die, the wrapped key blob survives
    const third = await Tpm2KeyProvider.open({ dataDir, logger: silentLogger(), env: env() });
    assert.deepEqual(third.publicKey(), key);
    const sig = await third.sign(Buffer.from('after reboot'));
    assert.equal(verifyP256(publicKeyFromPoint(key), Buffer.from('after reboot'), sig), true);
    await third.close();
  });

  it('a different data dir gets a different key', async () => {
    const a = await Tpm2KeyProvider.open({
      dataDir: join(dir.path, 'x'),
      logger: silentLogger(),
      env: env(),
    });
    const b = await Tpm2KeyProvider.open({
      dataDir: join(dir.path, 'y'),
      logger: silentLogger(),
      env: env(),
    });
    assert.notDeepEqual(a.publicKey(), b.publicKey());
    await a.close();
    await b.close();
  });

  it('refuses a damaged key blob with a ConfigError', async () => {
    const dataDir = join(dir.path, 'damaged');
    const provider = await Tpm2KeyProvider.open({ dataDir, logger: silentLogger(), env: env() });
    await provider.close();
    await writeFile(join(dataDir, 'tpm2', 'ak.priv'), Buffer.alloc(64, 1));
    await assert.rejects(Tpm2KeyProvider.open({ dataDir, logger: silentLogger(), env: env() }), ConfigError);
    await rm(join(dataDir, 'tpm2', 'ak.pub'));
    await assert.rejects(
      Tpm2KeyProvider.open({ dataDir, logger: silentLogger(), env: env() }),
      /incomplete TPM key/,
    );
  });

  it('auto selection picks tpm2 when TPM2TOOLS_TCTI is set', async () => {
    const provider = await selectAttestationKeyProvider({
      choice: 'auto',
      dataDir: join(dir.path, 'auto'),
      logger: silentLogger(),
      env: env(),
    });
    try {
      assert.equal(provider.kind, 'tpm2');
    } finally {
      await provider.close?.();
    }
  });

  it('an unreachable TPM is a ConfigError, not a hang', async () => {
    await assert.rejects(
      Tpm2KeyProvider.open({
        dataDir: join(dir.path, 'unreachable'),
        logger: silentLogger(),
        env: { ...process.env, TPM2TOOLS_TCTI: 'swtpm:host=127.0.0.1,port=1' },
        timeoutMs: 10_000,
      }),
      ConfigError,
    );
  });
});
