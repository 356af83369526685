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

export interface FairSignerOptions {
  /** Challenges one peer may have waiting for an answer; more are refused at once. Default 2. */
  perPeerPending?: number;
  /** Challenges waiting from all peers together. Default 64. */
  maxPending?: number;
  /** A peer earns one answer per this many ms (a token bucket)... Default 30 s. */
  perPeerIntervalMs?: number;
  /** ...and may spend up to this many at once. Default 4. */
  perPeerBurst?: number;
  clock?: () => number;
}

/** Peers whose answer budget is remembered; idle ones (full bucket) are dropped first. */
const MAX_TRACKED_PEERS = 4096;

interface SignJob {
  nonce: Uint8Array;
  resolve(signature: Uint8Array): void;
  reject(error: unknown): void;
}

/**
 * Answers liveness challenges one signature at a time (a TPM signs serially), taking peers in
 * turn, with a short bounded queue per peer: a peer that floods challenges is refused beyond its
 * own few and waits its turn like everyone else, so it delays only itself.
 */
export class FairChallengeSigner {
  readonly #sign: (nonce: Uint8Array) => Promise<Uint8Array>;
  readonly #perPeer: number;
  readonly #maxPending: number;
  /** Peers with waiting challenges, in turn order (a Map keeps insertion order). */
  readonly #queues = new Map<string, SignJob[]>();
  /** Per-peer token buckets: tokens left and when they were counted. */
  readonly #budgets = new Map<string, { tokens: number; atMs: number }>();
  readonly #intervalMs: number;
  readonly #burst: number;
  readonly #clock: () => number;
  #pending = 0;
  #busy = false;

  constructor(sign: (nonce: Uint8Array) => Promise<Uint8Array>, options: FairSignerOptions = {}) {
    this.#sign = sign;
    this.#perPeer = options.perPeerPending ?? 2;
    this.#maxPending = options.maxPending ?? 64;
    this.#intervalMs = options.perPeerIntervalMs ?? 30_000;
    this.#burst = options.perPeerBurst ?? 4;
    this.#clock = options.clock ?? Date.now;
  }

  /** Takes one answer from the peer's budget; false when it has none left. */
  #spend(peer: string): boolean {
    const now = this.#clock();
    const budget = this.#budgets.get(peer) ?? { tokens: this.#burst, atMs: now };
    budget.tokens = Math.min(this.#burst, budget.tokens + (now - budget.atMs) / this.#intervalMs);
    budget.atMs = now;
    if (budget.tokens < 1) return false;
    budget.tokens -= 1;
    this.#budgets.delete(peer);
    this.#budgets.set(peer, budget);
    if (this.#budgets.size > MAX_TRACKED_PEERS) {
      // The least recently answered peer: by now its bucket has refilled, or nearly.
      this.#budgets.delete(this.#budgets.keys().next().value!);
    }
    return true;
  }

  /** Challenges waiting now (all peers). */
  get pending(): number {
    return this.#pending;
  }

  answer(peer: string, nonce: Uint8Array): Promise<Uint8Array> {
    const queue = this.#queues.get(peer) ?? [];
    if (queue.length >= this.#perPeer) {
      return Promise.reject(new AttestationError('liveness', 'too many challenges from this peer at once'));
    }
    if (this.#pending >= this.#maxPending) {
      return Promise.reject(new AttestationError('liveness', 'too many challenges waiting; try again later'));
    }
    if (!this.#spend(peer)) {
      return Promise.reject(
        new AttestationError('liveness', 'this peer challenges faster than it is answered'),
      );
    }
    return new Promise((resolve, reject) => {
      queue.push({ nonce, resolve, reject });
      this.#queues.set(peer, queue);
      this.#pending += 1;
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      for (;;) {
        const next = this.#queues.entries().next();
        if (next.done) return;
        const [peer, queue] = next.value;
        const job = queue.shift()!;
        // The peer goes to the back of the line (or leaves it when it has nothing left).
        this.#queues.delete(peer);
        if (queue.length > 0) this.#queues.set(peer, queue);
        this.#pending -= 1;
        try {
          job.resolve(await this.#sign(job.nonce));
        } catch (error) {
          job.reject(error);
        }
      }
    } finally {
      this.#busy = false;
    }
  }
}
