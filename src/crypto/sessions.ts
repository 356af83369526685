/**
 * Per-request key material. A sender session opens the response to one request; a host session
 * seals it. Both are single-use: dispose() frees the secrets (the sealer and openResponse do it
 * when the stream finishes, and calling it twice is harmless).
 *
 * Each session also holds the crypto_box precomputed key (boxBeforeNm) of its key pair, so
 * response frames cost a secretbox each instead of an X25519 scalar multiplication each.
 */
import { E2EError } from './errors.ts';
import { boxBeforeNm, wipe } from './sodium.ts';

export class SenderSession {
  readonly ephemeralPublicKey: Uint8Array;
  /** sodium_malloc memory; length 0 after dispose(). */
  readonly ephemeralSecretKey: Uint8Array;
  /** The host key the request was sealed to; the response header must carry exactly this key. */
  readonly hostPublicKey: Uint8Array;
  #sharedKey: Uint8Array | undefined;
  #disposed = false;

  /** `sharedKey`, if given, is boxBeforeNm(hostPublicKey, ephemeralSecretKey); the session owns it. */
  constructor(
    ephemeralPublicKey: Uint8Array,
    ephemeralSecretKey: Uint8Array,
    hostPublicKey: Uint8Array,
    sharedKey?: Uint8Array,
  ) {
    this.ephemeralPublicKey = ephemeralPublicKey;
    this.ephemeralSecretKey = ephemeralSecretKey;
    this.hostPublicKey = hostPublicKey;
    this.#sharedKey = sharedKey;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The precomputed box key (computed on first use); throws E2EError 'closed' after dispose(). */
  get sharedKey(): Uint8Array {
    if (this.#disposed) throw new E2EError('closed', 'sender session was already disposed');
    this.#sharedKey ??= boxBeforeNm(this.hostPublicKey, this.ephemeralSecretKey);
    return this.#sharedKey;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    wipe(this.ephemeralSecretKey);
    if (this.#sharedKey) wipe(this.#sharedKey);
  }
}

export class HostSession {
  readonly senderEphemeralPublicKey: Uint8Array;
  readonly hostPublicKey: Uint8Array;
  /** A private copy in sodium_malloc memory, so it survives the keyring expiring the key. */
  readonly hostSecretKey: Uint8Array;
  /** The request's x-mesh-sent-at (unix ms). */
  readonly sentAtMs: number;
  #sharedKey: Uint8Array | undefined;
  #disposed = false;

  /** `sharedKey`, if given, is boxBeforeNm(senderEphemeralPublicKey, hostSecretKey); the session owns it. */
  constructor(
    senderEphemeralPublicKey: Uint8Array,
    hostPublicKey: Uint8Array,
    hostSecretKey: Uint8Array,
    sentAtMs: number,
    sharedKey?: Uint8Array,
  ) {
    this.senderEphemeralPublicKey = senderEphemeralPublicKey;
    this.hostPublicKey = hostPublicKey;
    this.hostSecretKey = hostSecretKey;
    this.sentAtMs = sentAtMs;
    this.#sharedKey = sharedKey;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The precomputed box key (computed on first use); throws E2EError 'closed' after dispose(). */
  get sharedKey(): Uint8Array {
    if (this.#disposed) throw new E2EError('closed', 'host session was already disposed');
    this.#sharedKey ??= boxBeforeNm(this.senderEphemeralPublicKey, this.hostSecretKey);
    return this.#sharedKey;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    wipe(this.hostSecretKey);
    if (this.#sharedKey) wipe(this.#sharedKey);
  }
}
