/**
 * Thin typed wrappers over sodium-native: NaCl box (X25519 + XSalsa20-Poly1305), the
 * ChaCha20-Poly1305 AEAD (the mesh transport's cipher) and secure memory. Everything else in
 * src/crypto goes through here, so the library surface is in one place.
 * crypto_box_beforenm is built from crypto_scalarmult + @noble/ciphers' HSalsa20 (sodium-native
 * exposes neither beforenm nor HSalsa20); the afternm helpers are crypto_secretbox.
 */
import { hsalsa } from '@noble/ciphers/salsa.js';
import sodium from 'sodium-native';
import { E2EError } from './errors.ts';

export const PUBLIC_KEY_BYTES: number = sodium.crypto_box_PUBLICKEYBYTES; // 32
export const SECRET_KEY_BYTES: number = sodium.crypto_box_SECRETKEYBYTES; // 32
export const NONCE_BYTES: number = sodium.crypto_box_NONCEBYTES; // 24
export const MAC_BYTES: number = sodium.crypto_box_MACBYTES; // 16
/** crypto_box_BEFORENMBYTES: the precomputed key is a secretbox key. */
export const BEFORENM_BYTES: number = sodium.crypto_secretbox_KEYBYTES; // 32

/**
 * The sodium-native calls used here, typed as what they accept. sodium-native 5 takes any typed
 * array; @types/sodium-native asks for Buffer, and wrapping every Uint8Array in a Buffer view
 * (several per Noise message) showed up in per-request profiles.
 */
interface NativeSodium {
  sodium_memzero(buffer: Uint8Array): void;
  sodium_memcmp(a: Uint8Array, b: Uint8Array): boolean;
  sodium_free(buffer: Uint8Array): void;
  randombytes_buf(buffer: Uint8Array): void;
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
  crypto_aead_chacha20poly1305_ietf_ABYTES: number;
  crypto_aead_chacha20poly1305_ietf_encrypt(
    c: Uint8Array,
    m: Uint8Array,
    ad: Uint8Array | null,
    nsec: null,
    npub: Uint8Array,
    k: Uint8Array,
  ): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(
    m: Uint8Array,
    nsec: null,
    c: Uint8Array,
    ad: Uint8Array | null,
    npub: Uint8Array,
    k: Uint8Array,
  ): number;
}
const native = sodium as unknown as NativeSodium;

/** A secret-key-sized buffer in guarded, locked memory (sodium_malloc). */
export function secureAlloc(size: number): Buffer {
  return sodium.sodium_malloc(size);
}

/**
 * 32-byte secret slots carved from sodium_malloc'd slabs. Each request needs one precomputed key
 * per side; a sodium_malloc per key costs an mmap, mprotects and an mlock (syscalls that showed
 * up in the per-request profile), and sodium-native only unmaps it when the GC finalizes it.
 * Slots stay in locked memory, are zeroed on release and reused; slabs are added on demand and
 * kept (their number follows peak concurrency, 64 keys each).
 */
class SecretSlots {
  static readonly SLOT_BYTES = BEFORENM_BYTES;
  static readonly SLOTS_PER_SLAB = 64;
  readonly #free: Buffer[] = [];
  readonly #owned = new WeakSet<Buffer>();
  readonly #taken = new WeakSet<Buffer>();

  take(): Buffer {
    if (this.#free.length === 0) this.#grow();
    const slot = this.#free.pop()!;
    this.#taken.add(slot);
    return slot;
  }

  /**
   * Zeroes and returns a slot; false when `buffer` is not one of ours. A second release of the
   * same slot only zeroes it again: queued twice, it could be handed to two sessions at once.
   */
  release(buffer: Buffer): boolean {
    if (!this.#owned.has(buffer)) return false;
    sodium.sodium_memzero(buffer);
    if (this.#taken.delete(buffer)) this.#free.push(buffer);
    return true;
  }

  #grow(): void {
    const { SLOT_BYTES, SLOTS_PER_SLAB } = SecretSlots;
    const slab = secureAlloc(SLOT_BYTES * SLOTS_PER_SLAB);
    for (let i = 0; i < SLOTS_PER_SLAB; i++) {
      const slot = slab.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES);
      this.#owned.add(slot);
      this.#free.push(slot);
    }
  }
}

const secretSlots = new SecretSlots();

/**
 * Zeroes and releases a secret. A pooled key slot goes back to its pool; a sodium_malloc buffer
 * is freed (sodium_free detaches the backing memory, so a later use throws instead of touching
 * freed memory; sodium-native only unmaps it when the GC finalizes it, hence the zeroing now);
 * plain buffers are zeroed in place.
 */
export function wipe(secret: Uint8Array): void {
  if (Buffer.isBuffer(secret) && secretSlots.release(secret)) return;
  if (secret.byteLength > 0) native.sodium_memzero(secret);
  if ((secret as Uint8Array & { secure?: boolean }).secure) native.sodium_free(secret);
}

export function boxKeypair(): { publicKey: Buffer; secretKey: Buffer } {
  const publicKey = Buffer.alloc(PUBLIC_KEY_BYTES);
  const secretKey = secureAlloc(SECRET_KEY_BYTES);
  sodium.crypto_box_keypair(publicKey, secretKey);
  return { publicKey, secretKey };
}

/**
 * Fills `target` with random bytes that will be public (nonces). They come from a pool refilled
 * by one libsodium call per 4 KiB instead of one call (a getrandom system call) per nonce; each
 * pool byte is handed out once. Never use this for secrets: the pool is ordinary memory.
 */
export function randomNonce(target: Uint8Array): void {
  const length = target.byteLength;
  if (length > NONCE_POOL_BYTES) {
    native.randombytes_buf(target);
    return;
  }
  if (noncePoolUsed + length > NONCE_POOL_BYTES) {
    sodium.randombytes_buf(noncePool);
    noncePoolUsed = 0;
  }
  target.set(noncePool.subarray(noncePoolUsed, noncePoolUsed + length));
  noncePoolUsed += length;
}

const NONCE_POOL_BYTES = 4096;
const noncePool = Buffer.alloc(NONCE_POOL_BYTES);
let noncePoolUsed = NONCE_POOL_BYTES;

// "expand 32-byte k" as native-endian words, the form noble's hsalsa takes (as it does internally).
const SIGMA = new Uint32Array(Uint8Array.from('expand 32-byte k', (c) => c.charCodeAt(0)).buffer);
const ZERO_NONCE = new Uint32Array(4);

/**
 * Secure scratch space for short-lived secrets (X25519 outputs, throwaway sender keys), reused
 * and zeroed after every use. sodium-native's sodium_free only detaches a buffer: the locked
 * pages are released when the GC finalizes it, so allocating per operation piles up mappings
 * under load. The functions using these are synchronous, so they never overlap.
 */
const scratchShared = secureAlloc(sodium.crypto_scalarmult_BYTES);
const scratchSecret = secureAlloc(SECRET_KEY_BYTES);

/** A word view of a sodium_malloc buffer (no copy, so the secret never leaves locked memory). */
function words(bytes: Buffer): Uint32Array {
  if (bytes.byteOffset % 4 !== 0) throw new Error('secure buffer is not word-aligned');
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/**
 * True when `publicKey` is the one canonical encoding of an X25519 u-coordinate: bit 255 clear
 * and the value below 2^255 - 19. X25519 ignores bit 255 and reduces larger values, so other
 * encodings of the same key exist; a host that keyed its replay check on raw bytes would take
 * such a variant of a captured envelope as new. Keys made by libsodium are always canonical.
 */
export function isCanonicalPublicKey(publicKey: Uint8Array): boolean {
  if (publicKey.byteLength !== PUBLIC_KEY_BYTES) return false;
  const top = publicKey[31]!;
  if (top > 0x7f) return false;
  if (top < 0x7f) return true;
  for (let i = 30; i >= 1; i--) if (publicKey[i] !== 0xff) return true;
  return publicKey[0]! < 0xed; // 2^255 - 19 = ed ff … ff 7f, little-endian
}

/**
 * crypto_box_beforenm, which sodium-native does not expose: k = HSalsa20(X25519(sk, pk), 0^16).
 * box(m, n, pk, sk) is exactly secretbox(m, n, k), so a stream of frames between the same two
 * keys pays for the scalar multiplication once instead of per frame. Returns k in a pooled
 * secure slot (give it back with wipe()). Like crypto_box, refuses a low-order public key
 * (all-zero shared secret) with E2EError 'invalid_key'.
 */
export function boxBeforeNm(publicKey: Uint8Array, secretKey: Uint8Array): Buffer {
  if (publicKey.byteLength !== PUBLIC_KEY_BYTES || secretKey.byteLength !== SECRET_KEY_BYTES) {
    throw new E2EError('invalid_key', 'X25519 keys must be 32 bytes');
  }
  try {
    try {
      // libsodium itself fails (status -1) on an all-zero result; the check below does not rely on it.
      native.crypto_scalarmult(scratchShared, secretKey, publicKey);
    } catch (cause) {
      throw new E2EError('invalid_key', 'public key is not a usable X25519 key', { cause });
    }
    if (sodium.sodium_is_zero(scratchShared, scratchShared.byteLength)) {
      throw new E2EError('invalid_key', 'public key is not a usable X25519 key');
    }
    const key = secretSlots.take();
    hsalsa(SIGMA, words(scratchShared), ZERO_NONCE, words(key));
    return key;
  } finally {
    sodium.sodium_memzero(scratchShared);
  }
}

/**
 * A fresh ephemeral X25519 keypair and its boxBeforeNm key towards `publicKey`. The ephemeral
 * secret lives only in scratch memory for the duration of this call (forward secrecy: nothing
 * but the per-exchange key survives). Throws E2EError 'invalid_key' for a low-order key.
 */
export function ephemeralBoxKey(publicKey: Uint8Array): { ephemeralPublicKey: Buffer; sharedKey: Buffer } {
  const ephemeralPublicKey = Buffer.alloc(PUBLIC_KEY_BYTES);
  try {
    sodium.crypto_box_keypair(ephemeralPublicKey, scratchSecret);
    return { ephemeralPublicKey, sharedKey: boxBeforeNm(publicKey, scratchSecret) };
  } finally {
    sodium.sodium_memzero(scratchSecret);
  }
}

/**
 * crypto_box_easy_afternm: box(message) under a boxBeforeNm key into `out` (message + 16 bytes).
 * `message` may be `out.subarray(MAC_BYTES)`: libsodium seals overlapping buffers in place.
 */
export function boxSealAfterNmInto(
  out: Uint8Array,
  message: Uint8Array,
  nonce: Uint8Array,
  key: Uint8Array,
): void {
  native.crypto_secretbox_easy(out, message, nonce, key);
}

/**
 * crypto_box_open_easy_afternm into `out` (ciphertext - 16 bytes); false when authentication
 * fails. `out` may be `ciphertext.subarray(MAC_BYTES)`: libsodium opens in place.
 */
export function boxOpenAfterNmInto(
  out: Uint8Array,
  ciphertext: Uint8Array,
  nonce: Uint8Array,
  key: Uint8Array,
): boolean {
  return native.crypto_secretbox_open_easy(out, ciphertext, nonce, key);
}

export const AEAD_TAG_BYTES: number = native.crypto_aead_chacha20poly1305_ietf_ABYTES; // 16

/** ChaCha20-Poly1305 (IETF, 96-bit nonce): plaintext → ciphertext || tag, in a new buffer. */
export function aeadSeal(plaintext: Uint8Array, nonce: Uint8Array, ad: Uint8Array, key: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(plaintext.byteLength + AEAD_TAG_BYTES);
  native.crypto_aead_chacha20poly1305_ietf_encrypt(out, plaintext, ad, null, nonce, key);
  return out;
}

/**
 * Opens ciphertext || tag; undefined when authentication fails (libsodium zeroes the output
 * then: no unauthenticated plaintext is left). The plaintext goes to `dst` when it has exactly
 * the right size (it may start at the ciphertext's own first byte: in place), else to a new buffer.
 */
export function aeadOpen(
  ciphertext: Uint8Array,
  nonce: Uint8Array,
  ad: Uint8Array,
  key: Uint8Array,
  dst?: Uint8Array,
): Uint8Array | undefined {
  const length = ciphertext.byteLength - AEAD_TAG_BYTES;
  if (length < 0) return undefined;
  const out = dst !== undefined && dst.byteLength === length ? dst : Buffer.allocUnsafe(length);
  try {
    native.crypto_aead_chacha20poly1305_ietf_decrypt(out, null, ciphertext, ad, nonce, key);
  } catch {
    return undefined;
  }
  return out;
}

/** Constant-time equality for equal-length byte strings (lengths are public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return native.sodium_memcmp(a, b);
}
