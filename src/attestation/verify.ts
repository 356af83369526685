import { createHash, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { SecurityPostureFacts } from '../hardening/types.ts';
import type { Logger } from '../log.ts';
import { publicKeyFromPoint } from './ecdsa.ts';
import { AttestationError, type AttestationErrorCode } from './errors.ts';
import type { PinStore } from './pins.ts';
import { type AttestationPolicy, type AttestationTier, tierAtLeast, unmetPosture } from './policy.ts';
import { isHardwareStorage, type KeyStorage } from './providers/types.ts';
import { attestationSigningBytes } from './signing-bytes.ts';
import {
  parseStatement,
  type SignedStatement,
  statementPublicKeyBytes,
  statementTimeMs,
} from './statement.ts';

/** A statement may be at most this far ahead of the verifier's clock. */
export const MAX_FUTURE_SKEW_MS = 30_000;
/** …and at most this old (refresh every 300 s, two missed refreshes plus slack). */
export const MAX_STATEMENT_AGE_MS = 660_000;

export interface AttestationVerdict {
  tier: AttestationTier;
  /** Valid, and at or above the policy's minimum tier. */
  ok: boolean;
  /** Claimed key storage (present once the signature verified). */
  keyStorage?: KeyStorage;
  /** First 16 hex digits of SHA-256 over the attestation key point. */
  keyFingerprint?: string;
  /** The attestation key (base64 point) to challenge for liveness. */
  sePublicKey?: string;
  verifiedAtMs: number;
  /** The key matches an operator pin or a TOFU pin for this endpoint. */
  pinned: boolean;
  /** The key matches the operator's pin in the policy file (trust on first use alone does not). */
  operatorTrusted: boolean;
  /** Failure code (AttestationErrorCode) when not ok. */
  code?: AttestationErrorCode;
  /** Readable failure reason, "code: message". */
  reason?: string;
  /** Signed posture (present once the signature verified). */
  posture?: SecurityPostureFacts;
  /** Signing time of the statement, unix ms. */
  statementTimeMs?: number;
}

export interface VerifyAttestationInput {
  blob: Uint8Array | undefined;
  /** Lower-case hex endpoint id of the peer the statement arrived for. */
  peerEndpointId: string;
  /** Inference key (base64) from the same announcement. */
  announcedInferenceKey: string | undefined;
  now: number;
  policy: AttestationPolicy;
  pins: PinStore;
  logger?: Logger;
}

export function keyFingerprint(point: Uint8Array): string {
  return createHash('sha256').update(point).digest('hex').slice(0, 16);
}

/**
 * Verifies a statement in SPEC §6.3 order: signature, endpoint, inference key, posture,
 * freshness, binary hash, pin. Never throws; every failure is a verdict with ok=false.
 * Only ever reports 'self-signed' or 'hardware-claimed': 'hardware-rooted' needs a TPM EK
 * chain proof that this version does not verify.
 */
export async function verifyAttestation(input: VerifyAttestationInput): Promise<AttestationVerdict> {
  const { now } = input;
  const base: AttestationVerdict = {
    tier: 'none',
    ok: false,
    verifiedAtMs: now,
    pinned: false,
    operatorTrusted: false,
  };
  const fail = (code: AttestationErrorCode, message: string): AttestationVerdict => ({
    ...base,
    ok: false,
    tier: 'none',
    code,
    reason: `${code}: ${message}`,
  });

  if (input.blob === undefined || input.blob.byteLength === 0) {
    return fail('missing', 'the peer sent no attestation statement');
  }
  let statement: SignedStatement;
  let key: KeyObject;
  try {
    statement = parseStatement(input.blob);
    key = publicKeyFromPoint(statementPublicKeyBytes(statement.attestation));
  } catch (error) {
    if (error instanceof AttestationError) return fail(error.code, error.message);
    return fail('malformed', 'statement could not be parsed');
  }
  const a = statement.attestation;

  // 1. Signature over the canonical bytes.
  const signature = Buffer.from(statement.signature, 'base64');
  if (!(await verifyAsync(key, attestationSigningBytes(a), signature))) {
    return fail('bad_signature', 'signature does not verify for se_public_key');
  }
  // From here on the fields are authenticated (by whoever holds the key).
  base.keyStorage = a.keyStorage;
  base.keyFingerprint = keyFingerprint(statementPublicKeyBytes(a));
  base.sePublicKey = a.sePublicKey;
  base.posture = a.posture;
  base.statementTimeMs = statementTimeMs(a);

  // 2. Bound to the peer that announced it.
  if (a.nodeEndpointId !== input.peerEndpointId.toLowerCase()) {
    return fail('endpoint_mismatch', 'node_endpoint_id is not the announcing peer');
  }
  // 3. Bound to the inference key announced alongside it.
  if (input.announcedInferenceKey === undefined || a.inferencePublicKey !== input.announcedInferenceKey) {
    return fail('inference_key_mismatch', 'inference_public_key differs from the announced inference key');
  }
  // 4. Posture.
  const unmet = unmetPosture(a.posture, input.policy.requiredPosture);
  if (unmet.length > 0) return fail('posture', `posture does not meet policy: ${unmet.join(', ')}`);
  // 5. Freshness.
  const t = base.statementTimeMs;
  if (t > now + MAX_FUTURE_SKEW_MS)
    return fail('timestamp_future', 'statement is dated more than 30 s ahead');
  if (t < now - MAX_STATEMENT_AGE_MS) return fail('expired', 'statement is older than 660 s');
  // 6. Code measurement.
  const allowed = input.policy.allowedBinaryHashes;
  if (allowed !== undefined && !allowed.includes(a.binaryHash)) {
    return fail('binary_hash', 'binary hash is not in the policy allowlist');
  }
  // 7. Pin: operator pins win; otherwise trust on first use. Lookup and pin happen with no
  // await in between so two racing statements cannot both pin.
  const endpoint = a.nodeEndpointId;
  const operatorPin = input.policy.pinnedKeys?.[endpoint];
  if (operatorPin !== undefined) {
    if (operatorPin !== a.sePublicKey) {
      return fail('pin_mismatch', 'attestation key differs from the key pinned in the policy file');
    }
    base.operatorTrusted = true;
  } else {
    const pin = input.pins.lookup(endpoint);
    if (pin !== undefined && pin.key !== a.sePublicKey) {
      input.logger?.warn(
        { endpoint, keyFingerprint: base.keyFingerprint },
        'attestation key CHANGED for a pinned peer; refusing until the operator resets its pin',
      );
      return fail('pin_mismatch', 'attestation key differs from the pinned key (reset the pin to re-trust)');
    }
    if (pin !== undefined) input.pins.seen(endpoint);
    else {
      try {
        await input.pins.pin(endpoint, a.sePublicKey, now);
      } catch (error) {
        // The pin holds in memory; only persistence failed.
        input.logger?.error({ endpoint, err: (error as Error).message }, 'could not persist attestation pin');
      }
    }
  }
  base.pinned = true;

  const tier: AttestationTier = isHardwareStorage(a.keyStorage) ? 'hardware-claimed' : 'self-signed';
  if (!tierAtLeast(tier, input.policy.minimumTier)) {
    return {
      ...base,
      tier,
      ok: false,
      code: 'tier_below_minimum',
      reason: `tier_below_minimum: ${tier} is below the policy minimum ${input.policy.minimumTier}`,
    };
  }
  return { ...base, tier, ok: true };
}

function verifyAsync(key: KeyObject, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      cryptoVerify('sha256', data, { key, dsaEncoding: 'der' }, signature, (error, valid) => {
        resolve(!error && valid);
      });
    } catch {
      resolve(false);
    }
  });
}

interface CacheEntry {
  verdict: Promise<AttestationVerdict>;
  /** Re-verify after this time (freshness windows move). */
  expiresAtMs: number;
}

/**
 * Caches verdicts per (endpoint, statement bytes, announced inference key). Entries expire
 * when the freshness window would change the answer; a pin change for an endpoint drops its
 * entries. Concurrent requests for the same key share one verification.
 */
export class AttestationVerifierCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #policy: AttestationPolicy;
  readonly #pins: PinStore;
  readonly #clock: () => number;
  readonly #logger: Logger | undefined;
  readonly #maxEntries: number;
  readonly #unsubscribe: () => void;

  constructor(options: {
    policy: AttestationPolicy;
    pins: PinStore;
    clock?: () => number;
    logger?: Logger;
    maxEntries?: number;
  }) {
    this.#policy = options.policy;
    this.#pins = options.pins;
    this.#clock = options.clock ?? Date.now;
    this.#logger = options.logger;
    this.#maxEntries = options.maxEntries ?? 1024;
    this.#unsubscribe = this.#pins.onChange((endpointId) => this.invalidate(endpointId));
  }

  get size(): number {
    return this.#entries.size;
  }

  verify(input: {
    blob: Uint8Array | undefined;
    peerEndpointId: string;
    announcedInferenceKey: string | undefined;
  }): Promise<AttestationVerdict> {
    const now = this.#clock();
    const endpoint = input.peerEndpointId.toLowerCase();
    const blobHash = input.blob ? createHash('sha256').update(input.blob).digest('hex') : '-';
    const cacheKey = `${endpoint}|${blobHash}|${input.announcedInferenceKey ?? '-'}`;
    const hit = this.#entries.get(cacheKey);
    if (hit && now < hit.expiresAtMs) {
      // Refresh LRU position.
      this.#entries.delete(cacheKey);
      this.#entries.set(cacheKey, hit);
      return hit.verdict;
    }
    const entry: CacheEntry = {
      verdict: Promise.resolve(undefined as never),
      expiresAtMs: Number.POSITIVE_INFINITY,
    };
    entry.verdict = verifyAttestation({
      ...input,
      peerEndpointId: endpoint,
      now,
      policy: this.#policy,
      pins: this.#pins,
      logger: this.#logger,
    }).then((verdict) => {
      entry.expiresAtMs = expiryOf(verdict);
      return verdict;
    });
    this.#entries.set(cacheKey, entry);
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    return entry.verdict;
  }

  /** Drops cached verdicts for one endpoint (or all). */
  invalidate(endpointId?: string): void {
    if (endpointId === undefined) {
      this.#entries.clear();
      return;
    }
    const prefix = `${endpointId.toLowerCase()}|`;
    for (const key of [...this.#entries.keys()]) if (key.startsWith(prefix)) this.#entries.delete(key);
  }

  /** Operator re-trust: forget the pin so the next valid statement is pinned anew. */
  async resetPin(endpointId: string): Promise<boolean> {
    const existed = await this.#pins.reset(endpointId.toLowerCase());
    this.invalidate(endpointId);
    return existed;
  }

  close(): void {
    this.#unsubscribe();
    this.#entries.clear();
  }
}

function expiryOf(verdict: AttestationVerdict): number {
  const t = verdict.statementTimeMs;
  if (t === undefined) return Number.POSITIVE_INFINITY;
  if (verdict.code === 'timestamp_future') return t - MAX_FUTURE_SKEW_MS;
  if (verdict.ok || verdict.code === 'tier_below_minimum') return t + MAX_STATEMENT_AGE_MS;
  return Number.POSITIVE_INFINITY;
}
