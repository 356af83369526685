/**
 * Noise's transport cipher (ChaChaPoly: ChaCha20-Poly1305 with a 96-bit nonce) on libsodium,
 * through @chainsafe/libp2p-noise's public `crypto` option. The default builds a node:crypto
 * Cipher, and a KeyObject from the raw key, for every message of 1200 bytes or more (and uses
 * WebAssembly below that): per request that was the largest single cost in both the client's and
 * the host's profile. One native call per message is 4–15× cheaper at the 1–4 KB a request and its
 * answer produce, 1.3× at 64 KB (bench/noise-cipher.ts).
 * The handshake (hashing, HKDF, X25519) stays the library's own.
 */
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { aeadOpen, aeadSeal } from '../crypto/sodium.ts';

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, key) {
    // A Uint8ArrayList's subarray() joins its pieces; a Uint8Array's is itself.
    return aeadSeal(plaintext.subarray(), nonce, ad, key);
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, key, dst) {
    const plaintext = aeadOpen(ciphertext.subarray(), nonce, ad, key, dst);
    // The library treats any throw as a failed decryption and closes the connection.
    if (plaintext === undefined) throw new Error('Invalid chacha20poly1305 decryption');
    return plaintext;
  },
};
