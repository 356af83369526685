/**
 * Per-request key material. A sender session opens the response to one request; a host session
 * seals it. The only secret either holds is the exchange's crypto_box precomputed key
 * (boxBeforeNm of the sender's ephemeral key and the host's inference key): response frames then
 * cost one secretbox each instead of an X25519 scalar multiplication each, and a session never
 * keeps the ephemeral secret or a copy of the inference secret. Both are single-use: dispose()
 * frees the key (the sealer and openResponse do it when the stream finishes; twice is harmless).
 */
import { E2EError } from './errors.ts';
import { wipe } from './sodium.ts';

export interface SenderSessionInit {
  ephemeralPublicKey: Uint8Array;
  /** The host key the request was sealed to. */
  hostPublicKey: Uint8Array;
  /** boxBeforeNm(hostPublicKey, ephemeral secret) in sodium_malloc memory; the session owns it. */
  sharedKey: Uint8Array;
}

export class SenderSession {
  readonly ephemeralPublicKey: Uint8Array;
  /** The host key the request was sealed to; the response header must carry exactly this key. */
  readonly hostPublicKey: Uint8Array;
  readonly #sharedKey: Uint8Array;
  #disposed = false;

  constructor(init: SenderSessionInit) {
    this.ephemeralPublicKey = init.ephemeralPublicKey;
    this.hostPublicKey = init.hostPublicKey;
    this.#sharedKey = init.sharedKey;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The precomputed box key; throws E2EError 'closed' after dispose(). */
  get sharedKey(): Uint8Array {
    if (this.#disposed) throw new E2EError('closed', 'sender session was already disposed');
    return this.#sharedKey;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    wipe(this.#sharedKey);
  }
}

export interface HostSessionInit {
  senderEphemeralPublicKey: Uint8Array;
  hostPublicKey: Uint8Array;
  /** The request's x-mesh-sent-at (unix ms). */
  sentAtMs: number;
  /**
   * boxBeforeNm(senderEphemeralPublicKey, host secret) in sodium_malloc memory; the session owns
   * it, so it outlives the keyring expiring the inference key.
   */
  sharedKey: Uint8Array;
}

export class HostSession {
  readonly senderEphemeralPublicKey: Uint8Array;
  readonly hostPublicKey: Uint8Array;
  /** The request's x-mesh-sent-at (unix ms). */
  readonly sentAtMs: number;
  readonly #sharedKey: Uint8Array;
  #disposed = false;

  constructor(init: HostSessionInit) {
    this.senderEphemeralPublicKey = init.senderEphemeralPublicKey;
    this.hostPublicKey = init.hostPublicKey;
    this.sentAtMs = init.sentAtMs;
    this.#sharedKey = init.sharedKey;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The precomputed box key; throws E2EError 'closed' after dispose(). */
  get sharedKey(): Uint8Array {
    if (this.#disposed) throw new E2EError('closed', 'host session was already disposed');
    return this.#sharedKey;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    wipe(this.#sharedKey);
  }
}
