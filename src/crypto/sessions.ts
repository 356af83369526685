/**
 * Per-request key material. A sender session opens the response to one request; a host session
 * seals it. Both are single-use: dispose() frees the secret (the sealer and openResponse do it
 * when the stream finishes, and calling it twice is harmless).
 */
import { wipe } from './sodium.ts';

export class SenderSession {
  readonly ephemeralPublicKey: Uint8Array;
  /** sodium_malloc memory; length 0 after dispose(). */
  readonly ephemeralSecretKey: Uint8Array;
  /** The host key the request was sealed to; the response header must carry exactly this key. */
  readonly hostPublicKey: Uint8Array;
  #disposed = false;

  constructor(ephemeralPublicKey: Uint8Array, ephemeralSecretKey: Uint8Array, hostPublicKey: Uint8Array) {
    this.ephemeralPublicKey = ephemeralPublicKey;
    this.ephemeralSecretKey = ephemeralSecretKey;
    this.hostPublicKey = hostPublicKey;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    wipe(this.ephemeralSecretKey);
  }
}

export class HostSession {
  readonly senderEphemeralPublicKey: Uint8Array;
  readonly hostPublicKey: Uint8Array;
  /** A private copy in sodium_malloc memory, so it survives the keyring expiring the key. */
  readonly hostSecretKey: Uint8Array;
  /** The request's x-mesh-sent-at (unix ms). */
  readonly sentAtMs: number;
  #disposed = false;

  constructor(
    senderEphemeralPublicKey: Uint8Array,
    hostPublicKey: Uint8Array,
    hostSecretKey: Uint8Array,
    sentAtMs: number,
  ) {
    this.senderEphemeralPublicKey = senderEphemeralPublicKey;
    this.hostPublicKey = hostPublicKey;
    this.hostSecretKey = hostSecretKey;
    this.sentAtMs = sentAtMs;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    wipe(this.hostSecretKey);
  }
}
