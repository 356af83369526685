import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { pointFromKeyObject, publicKeyFromPoint, verifyP256 } from '../../src/attestation/ecdsa.ts';
import {
  macSecurityPlatform,
  SecureEnclaveKeyProvider,
  type SecureEnclavePlatform,
} from '../../src/attestation/providers/secure-enclave.ts';
import { selectAttestationKeyProvider } from '../../src/attestation/providers/select.ts';
import { ConfigError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';

/**
 * Stand-in for Security.framework: a "keychain" of P-256 keys by tag. The real binding
 * (macSecurityPlatform) can only run on Apple Silicon; everything around it is tested here.
 */
function fakeEnclave(options: { brokenSign?: boolean; badPoint?: boolean; failCreate?: boolean } = {}) {
  const keychain = new Map<string, KeyObject>();
  const calls: string[] = [];
  const released: KeyObject[] = [];
  const platform: SecureEnclavePlatform<KeyObject> = {
    findKey(tag) {
      calls.push('find');
      return keychain.get(tag);
    },
    createKey(tag) {
      calls.push('create');
      if (options.failCreate) throw new Error('SecKeyCreateRandomKey failed (OSStatus -34018)');
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      keychain.set(tag, privateKey);
      return privateKey;
    },
    publicKey(key) {
      return options.badPoint ? new Uint8Array(33) : pointFromKeyObject(key);
    },
    async sign(key, data) {
      const { privateKey: other } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      return new Uint8Array(
        sign('sha256', data, { key: options.brokenSign ? other : key, dsaEncoding: 'der' }),
      );
    },
    release(key) {
      released.push(key);
    },
  };
  return { platform, keychain, calls, released };
}

describe('secure-enclave provider (platform calls injected)', () => {
  it('creates a key once, then finds the same key on restart', async () => {
    const fake = fakeEnclave();
    const first = await SecureEnclaveKeyProvider.open({ logger: silentLogger(), platform: fake.platform });
    assert.equal(first.kind, 'secure-enclave');
    assert.equal(first.hardware, true);
    assert.deepEqual(fake.calls, ['find', 'create']);
    const data = Buffer.from('hello');
    assert.equal(verifyP256(publicKeyFromPoint(first.publicKey()), data, await first.sign(data)), true);
    await first.close();
    await assert.rejects(first.sign(data), /closed/);
    const second = await SecureEnclaveKeyProvider.open({ logger: silentLogger(), platform: fake.platform });
    assert.deepEqual(second.publicKey(), first.publicKey());
    assert.deepEqual(fake.calls, ['find', 'create', 'find']);
    await second.close();
  });

  it('uses a separate key per tag', async () => {
    const fake = fakeEnclave();
    const a = await SecureEnclaveKeyProvider.open({
      logger: silentLogger(),
      platform: fake.platform,
      tag: 'a',
    });
    const b = await SecureEnclaveKeyProvider.open({
      logger: silentLogger(),
      platform: fake.platform,
      tag: 'b',
    });
    assert.notDeepEqual(a.publicKey(), b.publicKey());
  });

  it('turns platform failures into ConfigError and releases the key', async () => {
    await assert.rejects(
      SecureEnclaveKeyProvider.open({
        logger: silentLogger(),
        platform: fakeEnclave({ failCreate: true }).platform,
      }),
      (e: unknown) => e instanceof ConfigError && /-34018/.test(e.message),
    );
    const broken = fakeEnclave({ brokenSign: true });
    await assert.rejects(
      SecureEnclaveKeyProvider.open({ logger: silentLogger(), platform: broken.platform }),
      /self-test failed/,
    );
    assert.equal(broken.released.length, 1);
    await assert.rejects(
      SecureEnclaveKeyProvider.open({
        logger: silentLogger(),
        platform: fakeEnclave({ badPoint: true }).platform,
      }),
      /not an uncompressed P-256 point/,
    );
  });

  it('the real binding refuses to load off macOS', { skip: process.platform === 'darwin' }, () => {
    assert.throws(() => macSecurityPlatform(), /only available on macOS/);
  });
});

describe('provider selection', () => {
  const host = (over: {
    platform?: NodeJS.Platform;
    arch?: string;
    env?: NodeJS.ProcessEnv;
    device?: boolean;
    tools?: boolean;
  }) => ({
    platform: over.platform ?? ('linux' as NodeJS.Platform),
    arch: over.arch ?? 'x64',
    env: over.env ?? {},
    tpmDevicePresent: async () => over.device ?? false,
    tpm2ToolsInstalled: async () => over.tools ?? true,
  });

  it('auto falls back to software where there is no TPM or enclave', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dataDir = await mkdtemp(join(tmpdir(), 'mesh-llm-select-'));
    try {
      const provider = await selectAttestationKeyProvider({
        choice: 'auto',
        dataDir,
        logger: silentLogger(),
        host: host({}),
      });
      assert.equal(provider.kind, 'software');
      assert.equal(provider.hardware, false);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('explicit choices that are unavailable are ConfigErrors', async () => {
    const base = { dataDir: '/nonexistent-mesh-llm', logger: silentLogger() };
    await assert.rejects(
      selectAttestationKeyProvider({ ...base, choice: 'secure-enclave', host: host({}) }),
      (e: unknown) => e instanceof ConfigError && /Apple Silicon/.test(e.message),
    );
    await assert.rejects(
      selectAttestationKeyProvider({ ...base, choice: 'tpm2', host: host({}) }),
      (e: unknown) => e instanceof ConfigError && /tpmrm0/.test(e.message),
    );
    await assert.rejects(
      selectAttestationKeyProvider({ ...base, choice: 'tpm2', host: host({ device: true, tools: false }) }),
      (e: unknown) => e instanceof ConfigError && /tpm2-tools is not installed/.test(e.message),
    );
    await assert.rejects(
      selectAttestationKeyProvider({ ...base, choice: 'hsm' as never, host: host({}) }),
      (e: unknown) => e instanceof ConfigError && /unknown attestation key provider/.test(e.message),
    );
  });

  it('auto prefers the enclave on Apple Silicon and the TPM when a device or TCTI exists', async () => {
    const { autoKeyStorage } = await import('../../src/attestation/providers/select.ts');
    assert.equal(await autoKeyStorage(host({ platform: 'darwin', arch: 'arm64' })), 'secure-enclave');
    assert.equal(await autoKeyStorage(host({ platform: 'darwin', arch: 'x64' })), 'software');
    assert.equal(await autoKeyStorage(host({ device: true })), 'tpm2');
    assert.equal(await autoKeyStorage(host({ env: { TPM2TOOLS_TCTI: 'swtpm:port=1' } })), 'tpm2');
    assert.equal(await autoKeyStorage(host({})), 'software');
  });
});
