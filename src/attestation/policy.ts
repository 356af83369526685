import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { decodeBase64Strict } from '../encoding/base64.ts';
import { ConfigError } from '../errors.ts';
import type { PlaintextBoundaryFact, SecurityPostureFacts } from '../hardening/types.ts';
import { publicKeyFromPoint } from './ecdsa.ts';
import { POSTURE_FIELDS } from './signing-bytes.ts';

/**
 * Whether a verified statement counts for --require-attested-hosts beyond its tier: below
 * hardware-rooted a tier is the host's own claim, so the operator must have trusted the key
 * (pinnedKeys), unless the policy opts into trust on first use. Undefined = it counts.
 */
export function untrustedClaim(
  verdict: { tier: AttestationTier; operatorTrusted: boolean },
  policy: AttestationPolicy,
): string | undefined {
  if (verdict.tier === 'hardware-rooted' || verdict.operatorTrusted || policy.trustOnFirstUse === true) {
    return undefined;
  }
  return `tier ${verdict.tier} rests on the host's own claim and the operator has not trusted its key`;
}

/** Ordered trust tiers (SPEC §6.3). */
export type AttestationTier = 'none' | 'self-signed' | 'hardware-claimed' | 'hardware-rooted';
export const TIERS: readonly AttestationTier[] = [
  'none',
  'self-signed',
  'hardware-claimed',
  'hardware-rooted',
];

export function tierAtLeast(tier: AttestationTier, minimum: AttestationTier): boolean {
  return TIERS.indexOf(tier) >= TIERS.indexOf(minimum);
}

type BooleanKeys<T> = { [K in keyof T]: T[K] extends boolean ? K : never }[keyof T];
/** Posture facts a policy may require to be true. */
export type RequirablePostureFlag = Exclude<
  BooleanKeys<SecurityPostureFacts>,
  'startedWithUnsafeEnvironment'
>;

export const REQUIRABLE_POSTURE_FLAGS: readonly RequirablePostureFlag[] = POSTURE_FIELDS.filter(
  (f) => f.type === 'bool' && f.key !== 'startedWithUnsafeEnvironment',
).map((f) => f.key as RequirablePostureFlag);

/** Flags that must be true, plus an exact plaintext boundary when named. */
export type RequiredPosture = Partial<Record<RequirablePostureFlag, true>> & {
  plaintextBoundary?: PlaintextBoundaryFact;
};

export interface AttestationPolicy {
  minimumTier: AttestationTier;
  requiredPosture: RequiredPosture;
  /** Lower-case hex; when present, a statement's binary_hash must be one of these. */
  allowedBinaryHashes?: string[];
  /** Operator-pinned attestation keys (endpoint id hex → base64 SEC1 point); win over TOFU pins. */
  pinnedKeys?: Record<string, string>;
  /** PEM roots for TPM EK chains (hardware-rooted tier; not verified by this version). */
  trustedTpmRoots?: string[];
  /**
   * Let a key pinned on first sight count like an operator pin. Off by default: a tier below
   * hardware-rooted rests on the host's own claim, so it counts only for keys in pinnedKeys.
   */
  trustOnFirstUse?: boolean;
}

export function defaultAttestationPolicy(): AttestationPolicy {
  return { minimumTier: 'hardware-claimed', requiredPosture: {} };
}

/** Names of required posture items the posture does not meet (empty when it meets them all). */
export function unmetPosture(posture: SecurityPostureFacts, required: RequiredPosture): string[] {
  const unmet: string[] = [];
  for (const flag of REQUIRABLE_POSTURE_FLAGS) {
    if (required[flag] === true && posture[flag] !== true) unmet.push(flag);
  }
  if (required.plaintextBoundary !== undefined && posture.plaintextBoundary !== required.plaintextBoundary) {
    unmet.push(`plaintextBoundary=${required.plaintextBoundary}`);
  }
  return unmet;
}

const TOP_KEYS: Record<string, keyof AttestationPolicy> = {
  minimumTier: 'minimumTier',
  minimum_tier: 'minimumTier',
  requiredPosture: 'requiredPosture',
  required_posture: 'requiredPosture',
  allowedBinaryHashes: 'allowedBinaryHashes',
  allowed_binary_hashes: 'allowedBinaryHashes',
  pinnedKeys: 'pinnedKeys',
  pinned_keys: 'pinnedKeys',
  trustedTpmRoots: 'trustedTpmRoots',
  trusted_tpm_roots: 'trustedTpmRoots',
  trustOnFirstUse: 'trustOnFirstUse',
  trust_on_first_use: 'trustOnFirstUse',
};

const POSTURE_KEYS: Record<string, RequirablePostureFlag | 'plaintextBoundary'> = (() => {
  const map: Record<string, RequirablePostureFlag | 'plaintextBoundary'> = {
    plaintextBoundary: 'plaintextBoundary',
    plaintext_boundary: 'plaintextBoundary',
  };
  for (const spec of POSTURE_FIELDS) {
    if (spec.type === 'bool' && spec.key !== 'startedWithUnsafeEnvironment') {
      map[spec.key] = spec.key as RequirablePostureFlag;
      map[spec.json] = spec.key as RequirablePostureFlag;
    }
  }
  return map;
})();

const HEX64 = /^[0-9a-fA-F]{64}$/;
const BOUNDARIES: readonly PlaintextBoundaryFact[] = ['in-process', 'external-backend', 'none'];

/**
 * Parses a policy file (JSON). Strict: unknown keys and wrong types are a ConfigError naming the
 * problem. Keys may be camelCase or snake_case. `source` names the file in messages.
 */
export function parseAttestationPolicy(text: string, source = 'attestation policy'): AttestationPolicy {
  const fail = (message: string): never => {
    throw new ConfigError(`${source}: ${message}`);
  };
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (error) {
    return fail(`not valid JSON (${(error as Error).message})`);
  }
  if (root === null || typeof root !== 'object' || Array.isArray(root)) return fail('must be a JSON object');
  const policy = defaultAttestationPolicy();
  const seen = new Set<keyof AttestationPolicy>();
  for (const [rawKey, value] of Object.entries(root as Record<string, unknown>)) {
    const key = TOP_KEYS[rawKey];
    if (key === undefined || !Object.hasOwn(TOP_KEYS, rawKey)) {
      return fail(
        `unknown key '${rawKey}' (allowed: minimumTier, requiredPosture, allowedBinaryHashes, pinnedKeys, trustedTpmRoots, trustOnFirstUse)`,
      );
    }
    if (seen.has(key)) fail(`'${key}' is given twice`);
    seen.add(key);
    switch (key) {
      case 'minimumTier':
        if (typeof value !== 'string' || !(TIERS as readonly string[]).includes(value)) {
          fail(`minimumTier must be one of ${TIERS.join(', ')}`);
        }
        policy.minimumTier = value as AttestationTier;
        break;
      case 'requiredPosture':
        policy.requiredPosture = parseRequiredPosture(value, fail);
        break;
      case 'allowedBinaryHashes': {
        if (!Array.isArray(value)) return fail('allowedBinaryHashes must be an array of hex SHA-256 strings');
        if (value.length === 0) fail('allowedBinaryHashes is empty (omit it to allow any binary)');
        policy.allowedBinaryHashes = value.map((item, i) => {
          if (typeof item !== 'string' || !HEX64.test(item)) {
            return fail(`allowedBinaryHashes[${i}] must be 64 hex digits`);
          }
          return item.toLowerCase();
        });
        break;
      }
      case 'pinnedKeys': {
        if (value === null || typeof value !== 'object' || Array.isArray(value)) {
          return fail('pinnedKeys must be an object of endpoint id → base64 P-256 key');
        }
        const pins: Record<string, string> = {};
        for (const [endpoint, keyB64] of Object.entries(value as Record<string, unknown>)) {
          if (!HEX64.test(endpoint))
            fail(`pinnedKeys: '${endpoint.slice(0, 80)}' is not a 64-hex endpoint id`);
          const point = typeof keyB64 === 'string' ? decodeBase64Strict(keyB64) : undefined;
          try {
            if (point === undefined) throw new Error('not base64');
            publicKeyFromPoint(point);
          } catch {
            fail(`pinnedKeys['${endpoint}'] must be base64 of an uncompressed P-256 point`);
          }
          pins[endpoint.toLowerCase()] = keyB64 as string;
        }
        policy.pinnedKeys = pins;
        break;
      }
      case 'trustOnFirstUse':
        if (typeof value !== 'boolean') fail('trustOnFirstUse must be true or false');
        policy.trustOnFirstUse = value as boolean;
        break;
      case 'trustedTpmRoots': {
        if (!Array.isArray(value)) return fail('trustedTpmRoots must be an array of PEM certificates');
        policy.trustedTpmRoots = value.map((item, i) => {
          if (typeof item !== 'string') return fail(`trustedTpmRoots[${i}] must be a PEM string`);
          try {
            new X509Certificate(item);
          } catch {
            fail(`trustedTpmRoots[${i}] is not a valid PEM certificate`);
          }
          return item;
        });
        break;
      }
    }
  }
  return policy;
}

function parseRequiredPosture(value: unknown, fail: (message: string) => never): RequiredPosture {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail(
      'requiredPosture must be an object like {"debuggerBlocked": true, "plaintextBoundary": "in-process"}',
    );
  }
  const required: RequiredPosture = {};
  for (const [rawKey, item] of Object.entries(value as Record<string, unknown>)) {
    const key = Object.hasOwn(POSTURE_KEYS, rawKey) ? POSTURE_KEYS[rawKey] : undefined;
    if (key === undefined) {
      fail(
        `requiredPosture: unknown item '${rawKey}' (allowed: ${REQUIRABLE_POSTURE_FLAGS.join(', ')}, plaintextBoundary)`,
      );
    } else if (key === 'plaintextBoundary') {
      if (typeof item !== 'string' || !(BOUNDARIES as readonly string[]).includes(item)) {
        fail(`requiredPosture.plaintextBoundary must be one of ${BOUNDARIES.join(', ')}`);
      }
      required.plaintextBoundary = item as PlaintextBoundaryFact;
    } else {
      if (item !== true) fail(`requiredPosture.${key} must be true (omit it to not require it)`);
      required[key] = true;
    }
  }
  return required;
}

/** Reads and parses a policy file; errors name the file. */
export async function loadAttestationPolicy(path: string): Promise<AttestationPolicy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read attestation policy file ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  return parseAttestationPolicy(text, path);
}
