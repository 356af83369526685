import assert from 'node:assert/strict';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { publicKeyFromPoint, verifyP256 } from '../../src/attestation/ecdsa.ts';
import { SOFTWARE_KEY_FILE, SoftwareKeyProvider } from '../../src/attestation/providers/software.ts';
import { ConfigError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { tempDir } from './helpers.ts';

describe('software attestation key', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir();
  });
  after(() => dir.cleanup());

  it('creates a 0600 P-256 key, signs verifiably, and is never hardware', async () => {
    const provider = await SoftwareKeyProvider.open({ dataDir: join(dir.path, 'a'), logger: silentLogger() });
    assert.equal(provider.kind, 'software');
    assert.equal(provider.hardware, false);
    const point = provider.publicKey();
    assert.equal(point.byteLength, 65);
    assert.equal(point[0], 4);
    assert.equal((await stat(provider.path)).mode & 0o777, 0o600);
    const data = Buffer.from('hello attestation');
    const signature = await provider.sign(data);
    assert.equal(signature[0], 0x30);
    assert.equal(verifyP256(publicKeyFromPoint(point), data, signature), true);
    assert.equal(verifyP256(publicKeyFromPoint(point), Buffer.from('other'), signature), false);
  });

  it('keeps the same key across restarts', async () => {
    const dataDir = join(dir.path, 'b');
    const first = await SoftwareKeyProvider.open({ dataDir, logger: silentLogger() });
    const second = await SoftwareKeyProvider.open({ dataDir, logger: silentLogger() });
    assert.deepEqual(second.publicKey(), first.publicKey());
    const [x, y] = await Promise.all([
      SoftwareKeyProvider.open({ dataDir: join(dir.path, 'race'), logger: silentLogger() }),
      SoftwareKeyProvider.open({ dataDir: join(dir.path, 'race'), logger: silentLogger() }),
    ]);
    assert.deepEqual(x.publicKey(), y.publicKey(), 'concurrent first starts agree on one key');
  });

  it('tightens a key file readable by others to 0600', async () => {
    const dataDir = join(dir.path, 'c');
    const first = await SoftwareKeyProvider.open({ dataDir, logger: silentLogger() });
    await chmod(first.path, 0o644);
    const again = await SoftwareKeyProvider.open({ dataDir, logger: silentLogger() });
    assert.equal((await stat(again.path)).mode & 0o777, 0o600);
    assert.deepEqual(again.publicKey(), first.publicKey());
  });

  it('refuses a garbage or non-P-256 key file with a ConfigError', async () => {
    const dataDir = join(dir.path, 'd');
    await SoftwareKeyProvider.open({ dataDir, logger: silentLogger() });
    await writeFile(join(dataDir, SOFTWARE_KEY_FILE), 'not a key', { mode: 0o600 });
    await assert.rejects(SoftwareKeyProvider.open({ dataDir, logger: silentLogger() }), ConfigError);
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey } = generateKeyPairSync('ed25519');
    await writeFile(join(dataDir, SOFTWARE_KEY_FILE), privateKey.export({ format: 'pem', type: 'pkcs8' }), {
      mode: 0o600,
    });
    await assert.rejects(SoftwareKeyProvider.open({ dataDir, logger: silentLogger() }), /P-256/);
  });
});
