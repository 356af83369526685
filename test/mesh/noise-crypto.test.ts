import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';
import { noiseCrypto } from '../../src/mesh/noise-crypto.ts';

const key = randomBytes(32);
const nonce = Buffer.concat([Buffer.alloc(4), randomBytes(8)]); // Noise: 4 zero bytes + counter
const SIZES = [0, 1, 100, 1199, 1200, 4096, 65_519];
/** noise's Uint8ArrayList type comes from its own copy of the package; only the shape matters. */
type NoiseBytes = Parameters<typeof noiseCrypto.chaCha20Poly1305Encrypt>[0];
const list = (...parts: Uint8Array[]) => new Uint8ArrayList(...parts) as unknown as NoiseBytes;

describe('noise transport cipher on libsodium', () => {
  it('produces exactly the library default ciphertext and opens it, both ways, at every size', () => {
    for (const size of SIZES) {
      const plaintext = randomBytes(size);
      const ad = randomBytes(size % 3 === 0 ? 0 : 32);
      const ours = Buffer.from(noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, key).subarray());
      const theirs = Buffer.from(defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, key).subarray());
      assert.deepEqual(ours, theirs, `ciphertext differs at ${size} bytes`);
      assert.deepEqual(
        Buffer.from(noiseCrypto.chaCha20Poly1305Decrypt(theirs, nonce, ad, key).subarray()),
        plaintext,
      );
      assert.deepEqual(
        Buffer.from(defaultCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, key).subarray()),
        plaintext,
      );
    }
  });

  it('takes Uint8ArrayList input (the handshake and split messages pass lists)', () => {
    const plaintext = randomBytes(3000);
    const pieces = list(plaintext.subarray(0, 1000), plaintext.subarray(1000));
    const sealed = noiseCrypto.chaCha20Poly1305Encrypt(pieces, nonce, new Uint8Array(0), key).subarray();
    const sealedList = list(sealed.subarray(0, 7), sealed.subarray(7));
    const opened = noiseCrypto.chaCha20Poly1305Decrypt(sealedList, nonce, new Uint8Array(0), key);
    assert.deepEqual(Buffer.from(opened.subarray()), plaintext);
  });

  it('opens in place into dst when the library passes one (the start of the ciphertext itself)', () => {
    const plaintext = randomBytes(2048);
    const sealed = Buffer.from(
      noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, new Uint8Array(0), key).subarray(),
    );
    const dst = sealed.subarray(0, plaintext.byteLength);
    const opened = noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), key, dst);
    assert.equal(opened, dst);
    assert.deepEqual(Buffer.from(dst), plaintext);
  });

  it('throws on a flipped bit, a wrong key, nonce or associated data, and a short input; releases no plaintext', () => {
    const plaintext = randomBytes(1500);
    const ad = randomBytes(32);
    const sealed = Buffer.from(noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, key).subarray());
    const open = (c: Uint8Array, n = nonce, a: Uint8Array = ad, k: Uint8Array = key, dst?: Uint8Array) =>
      noiseCrypto.chaCha20Poly1305Decrypt(c, n, a, k, dst);
    for (const at of [0, 700, sealed.byteLength - 1]) {
      const tampered = Buffer.from(sealed);
      tampered[at]! ^= 0x01;
      const dst = tampered.subarray(0, plaintext.byteLength);
      assert.throws(() => open(tampered, nonce, ad, key, dst));
      // libsodium zeroes the output of a failed open: no unauthenticated plaintext is left.
      assert.ok(dst.every((b) => b === 0));
    }
    assert.throws(() => open(sealed, nonce, ad, randomBytes(32)));
    assert.throws(() => open(sealed, Buffer.concat([Buffer.alloc(4), randomBytes(8)])));
    assert.throws(() => open(sealed, nonce, randomBytes(32)));
    assert.throws(() => open(sealed.subarray(0, 15)));
  });
});
