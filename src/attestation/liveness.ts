import { decodeBase64Strict } from '../encoding/base64.ts';
import { publicKeyFromPoint, verifyP256 } from './ecdsa.ts';
import { AttestationError } from './errors.ts';
import type { AttestationKeyProvider } from './providers/types.ts';

export const CHALLENGE_DOMAIN = 'mesh-llm-challenge-v1:';
export const NONCE_BYTES = 32;
/** Consecutive failed or missing answers after which a peer is not live (SPEC §6.4). */
export const MAX_MISSES = 3;

/** "mesh-llm-challenge-v1:" || u32le(len(se_public_key_b64)) || se_public_key_b64 || nonce(32). */
export function challengeBytes(sePublicKeyB64: string, nonce: Uint8Array): Uint8Array {
  if (nonce.byteLength !== NONCE_BYTES)
    throw new AttestationError('liveness', 'challenge nonce must be 32 bytes');
  const key = Buffer.from(sePublicKeyB64, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(key.byteLength);
  return new Uint8Array(Buffer.concat([Buffer.from(CHALLENGE_DOMAIN, 'ascii'), length, key, nonce]));
}

/** Signs a peer's challenge with this node's attestation key; returns DER. */
export async function answerChallenge(
  provider: AttestationKeyProvider,
  nonce: Uint8Array,
): Promise<Uint8Array> {
  const keyB64 = Buffer.from(provider.publicKey()).toString('base64');
  return provider.sign(challengeBytes(keyB64, nonce));
}

/** True when `signatureDer` is a valid answer by the key `sePublicKeyB64` to `nonce`. Never throws. */
export function verifyChallengeAnswer(
  sePublicKeyB64: string,
  nonce: Uint8Array,
  signatureDer: Uint8Array,
): boolean {
  try {
    const point = decodeBase64Strict(sePublicKeyB64);
    if (point === undefined || nonce.byteLength !== NONCE_BYTES) return false;
    return verifyP256(publicKeyFromPoint(point), challengeBytes(sePublicKeyB64, nonce), signatureDer);
  } catch {
    return false;
  }
}

export interface LivenessState {
  consecutiveMisses: number;
  lastOkMs?: number;
  lastMissMs?: number;
}

/**
 * Per-peer liveness. A peer is live once it has answered a challenge and stays live until
 * MAX_MISSES challenges in a row fail or go unanswered; one good answer makes it live again.
 * A peer never challenged is not live (fail closed).
 */
export class LivenessTracker {
  readonly #states = new Map<string, LivenessState>();
  readonly #maxMisses: number;
  readonly #clock: () => number;

  constructor(options: { maxMisses?: number; clock?: () => number } = {}) {
    this.#maxMisses = options.maxMisses ?? MAX_MISSES;
    this.#clock = options.clock ?? Date.now;
  }

  record(endpointId: string, ok: boolean): void {
    const state = this.#states.get(endpointId) ?? { consecutiveMisses: 0 };
    const now = this.#clock();
    if (ok) {
      state.consecutiveMisses = 0;
      state.lastOkMs = now;
    } else {
      state.consecutiveMisses += 1;
      state.lastMissMs = now;
    }
    this.#states.set(endpointId, state);
  }

  isLive(endpointId: string): boolean {
    const state = this.#states.get(endpointId);
    return state?.lastOkMs !== undefined && state.consecutiveMisses < this.#maxMisses;
  }

  state(endpointId: string): LivenessState | undefined {
    const state = this.#states.get(endpointId);
    return state && { ...state };
  }

  /** Forget a peer (it left, or its attestation key changed). */
  forget(endpointId: string): void {
    this.#states.delete(endpointId);
  }
}
