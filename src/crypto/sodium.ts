/**
 * Thin typed wrappers over sodium-native: NaCl box (X25519 + XSalsa20-Poly1305) and secure
 * memory. Everything else in src/crypto goes through here, so the library surface is in one place.
 */
import sodium from 'sodium-native';

export const PUBLIC_KEY_BYTES: number = sodium.crypto_box_PUBLICKEYBYTES; // 32
export const SECRET_KEY_BYTES: number = sodium.crypto_box_SECRETKEYBYTES; // 32
export const NONCE_BYTES: number = sodium.crypto_box_NONCEBYTES; // 24
export const MAC_BYTES: number = sodium.crypto_box_MACBYTES; // 16

/** A Buffer view over the same memory (no copy); sodium-native's typings want Buffer. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A secret-key-sized buffer in guarded, locked memory (sodium_malloc). */
export function secureAlloc(size: number): Buffer {
  return sodium.sodium_malloc(size);
}

export function secureCopy(secret: Uint8Array): Buffer {
  const out = secureAlloc(secret.byteLength);
  out.set(secret);
  return out;
}

/**
 * Zeroes and releases a secret. sodium_free detaches the backing memory, so a later use throws
 * (length 0) instead of touching freed memory; plain buffers are zeroed in place.
 */
export function wipe(secret: Uint8Array): void {
  const buf = asBuffer(secret);
  if ((buf as Buffer & { secure?: boolean }).secure) {
    // sodium_free exists at run time but is missing from @types/sodium-native.
    (sodium as unknown as { sodium_free(buffer: Buffer): void }).sodium_free(buf);
  } else if (buf.byteLength > 0) {
    sodium.sodium_memzero(buf);
  }
}

export function boxKeypair(): { publicKey: Buffer; secretKey: Buffer } {
  const publicKey = Buffer.alloc(PUBLIC_KEY_BYTES);
  const secretKey = secureAlloc(SECRET_KEY_BYTES);
  sodium.crypto_box_keypair(publicKey, secretKey);
  return { publicKey, secretKey };
}

export function randomFill(target: Uint8Array): void {
  sodium.randombytes_buf(asBuffer(target));
}

/** Writes box(message) (MAC || ciphertext) into `out`, which must be message + 16 bytes long. */
export function boxSealInto(
  out: Uint8Array,
  message: Uint8Array,
  nonce: Uint8Array,
  publicKey: Uint8Array,
  secretKey: Uint8Array,
): void {
  sodium.crypto_box_easy(
    asBuffer(out),
    asBuffer(message),
    asBuffer(nonce),
    asBuffer(publicKey),
    asBuffer(secretKey),
  );
}

/** Opens box(message) into `out` (ciphertext - 16 bytes long); false when authentication fails. */
export function boxOpenInto(
  out: Uint8Array,
  ciphertext: Uint8Array,
  nonce: Uint8Array,
  publicKey: Uint8Array,
  secretKey: Uint8Array,
): boolean {
  return sodium.crypto_box_open_easy(
    asBuffer(out),
    asBuffer(ciphertext),
    asBuffer(nonce),
    asBuffer(publicKey),
    asBuffer(secretKey),
  );
}

/** Constant-time equality for equal-length byte strings (lengths are public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return sodium.sodium_memcmp(asBuffer(a), asBuffer(b));
}
