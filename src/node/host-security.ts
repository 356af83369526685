import { decodeInferencePublicKey } from '../crypto/inference-keys.ts';
import type { PeerRecord } from '../mesh/types.ts';
import type { HostGate, HostSecurity } from '../routing/router.ts';

/** Per-peer attestation facts the routing policy needs (filled by the attestation service). */
export interface PeerTrust {
  /** The peer passed verification at or above the policy minimum and answers liveness. */
  qualifies(endpointId: string): { ok: true } | { ok: false; reason: string };
  /** Rank for preference: higher is more trusted (0 = none). */
  rank(endpointId: string): number;
}

const keyCache = new WeakMap<PeerRecord['announcement'], Uint8Array | null>();

/** The peer's advertised inference key (field 36) when it is well-formed. */
export function advertisedInferenceKey(peer: PeerRecord): Uint8Array | undefined {
  const announcement = peer.announcement;
  let key = keyCache.get(announcement);
  if (key === undefined) {
    try {
      key = announcement.inferencePublicKey
        ? decodeInferencePublicKey(announcement.inferencePublicKey)
        : null;
    } catch {
      key = null;
    }
    keyCache.set(announcement, key);
  }
  return key ?? undefined;
}

/**
 * `e2e: false` emulates a node from before E2E: it neither knows nor uses field 36.
 * `attestationPolicy`: the client routes under --require-attested-hosts; only then does a proven
 * tier make a host preferred (SPEC §6.5: no tier is a reason to prefer a host without a policy).
 */
export function createHostSecurity(
  trust: PeerTrust | undefined,
  options: { e2e: boolean; attestationPolicy: boolean },
): HostSecurity {
  const ranked = options.attestationPolicy ? trust : undefined;
  return {
    inferenceKey: options.e2e ? advertisedInferenceKey : () => undefined,
    preference: (peer) => ranked?.rank(peer.endpointId) ?? 0,
  };
}

/** --require-encryption: never send plaintext (SPEC §5 rules). */
export const requireEncryptionGate: HostGate = {
  code: 'no_encrypted_host',
  refuse: (_peer, key) => (key ? undefined : 'advertises no inference key (would be plaintext)'),
};

/** --require-attested-hosts: attested, live, at or above the minimum tier, and never plaintext. */
export function requireAttestationGate(trust: PeerTrust): HostGate {
  return {
    code: 'no_attested_host',
    refuse(peer, key) {
      if (!key) return 'advertises no inference key (would be plaintext)';
      const verdict = trust.qualifies(peer.endpointId);
      return verdict.ok ? undefined : verdict.reason;
    },
  };
}
