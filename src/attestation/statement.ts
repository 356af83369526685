import { decodeBase64Strict } from '../encoding/base64.ts';
import type { PlaintextBoundaryFact, SecurityPostureFacts } from '../hardening/types.ts';
import { P256_POINT_BYTES, publicKeyFromPoint } from './ecdsa.ts';
import { AttestationError } from './errors.ts';
import { type AttestationKeyProvider, KEY_STORAGES } from './providers/types.ts';
import {
  ATTESTATION_FIELDS,
  type AttestationFields,
  attestationSigningBytes,
  type FieldSpec,
  POSTURE_FIELDS,
} from './signing-bytes.ts';

export type { AttestationFields } from './signing-bytes.ts';

/** A statement and its signature: standard base64 of DER ECDSA P-256/SHA-256 over the signing bytes. */
export interface SignedStatement {
  attestation: AttestationFields;
  signature: string;
}

/** Measured facts the caller supplies; key, storage and time come from the provider and clock. */
export interface StatementFacts {
  chipName: string;
  hardwareModel: string;
  unifiedMemoryBytes: number;
  nodeEndpointId: string;
  inferencePublicKey: string;
  version: string;
  posture: SecurityPostureFacts;
  /** Unix ms of signing (explicit so tests and callers control the clock). */
  nowMs: number;
}

/** Upper bound for an encoded statement; real ones are about 1.5 KiB. */
export const MAX_STATEMENT_BYTES = 16 * 1024;
const MAX_TEXT = 256;
const MAX_ENV_NAMES = 64;
const HEX64 = /^[0-9a-f]{64}$/;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
/** A variable name, or a Node flag name (hardening reports unsafe start-up flags by name too). */
const ENV_NAME = /^(?:[A-Za-z_][A-Za-z0-9_]{0,127}|--?[A-Za-z0-9][A-Za-z0-9-]{0,127})$/;
const CONTROL = /[\u0000-\u001f\u007f]/;
const BOUNDARIES: readonly PlaintextBoundaryFact[] = ['in-process', 'external-backend', 'none'];

/** Signs the facts with the provider's key. The result passes `parseStatement` by construction. */
export async function buildStatement(
  facts: StatementFacts,
  provider: AttestationKeyProvider,
): Promise<SignedStatement> {
  const posture = { ...facts.posture, unsafeEnvironment: [...facts.posture.unsafeEnvironment] };
  const attestation: AttestationFields = {
    chipName: facts.chipName,
    hardwareModel: facts.hardwareModel,
    unifiedMemoryBytes: facts.unifiedMemoryBytes,
    sipEnabled: posture.sipEnabled,
    secureBootEnabled: posture.secureBootEnabled,
    rdmaDisabled: posture.rdmaDisabled,
    nodeEndpointId: facts.nodeEndpointId,
    inferencePublicKey: facts.inferencePublicKey,
    sePublicKey: Buffer.from(provider.publicKey()).toString('base64'),
    binaryHash: posture.binaryHash,
    timestamp: new Date(facts.nowMs).toISOString(),
    version: facts.version,
    platform: posture.platform,
    keyStorage: provider.kind,
    posture,
  };
  validateAttestation(attestation);
  let signature: Uint8Array;
  try {
    signature = await provider.sign(attestationSigningBytes(attestation));
  } catch (cause) {
    throw new AttestationError('provider', `the ${provider.kind} attestation key failed to sign`, { cause });
  }
  return { attestation, signature: Buffer.from(signature).toString('base64') };
}

/** JSON bytes for announcement field 38: {"attestation":{snake_case fields},"signature":B64}. */
export function encodeStatement(statement: SignedStatement): Uint8Array {
  const attestation: Record<string, unknown> = {};
  for (const spec of ATTESTATION_FIELDS) attestation[spec.json] = statement.attestation[spec.key];
  const posture: Record<string, unknown> = {};
  for (const spec of POSTURE_FIELDS) posture[spec.json] = statement.attestation.posture[spec.key];
  attestation.posture = posture;
  return new TextEncoder().encode(JSON.stringify({ attestation, signature: statement.signature }));
}

/** Strictly parses field-38 bytes. Anything malformed is AttestationError('malformed'). */
export function parseStatement(bytes: Uint8Array): SignedStatement {
  if (!(bytes instanceof Uint8Array)) throw malformed('statement is not a byte array');
  if (bytes.byteLength === 0) throw malformed('statement is empty');
  if (bytes.byteLength > MAX_STATEMENT_BYTES)
    throw malformed(`statement exceeds ${MAX_STATEMENT_BYTES} bytes`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw malformed('statement is not valid UTF-8');
  }
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch {
    throw malformed('statement is not valid JSON');
  }
  const top = expectObject(root, 'statement', ['attestation', 'signature']);
  const signature = top.signature;
  if (typeof signature !== 'string') throw malformed('signature must be a string');
  const sigBytes = decodeBase64Strict(signature);
  if (sigBytes === undefined || sigBytes.byteLength < 8 || sigBytes.byteLength > 72 || sigBytes[0] !== 0x30) {
    throw malformed('signature is not base64 DER ECDSA');
  }
  const rawAttestation = expectObject(top.attestation, 'attestation', [
    ...ATTESTATION_FIELDS.map((f) => f.json),
    'posture',
  ]);
  const rawPosture = expectObject(
    rawAttestation.posture,
    'posture',
    POSTURE_FIELDS.map((f) => f.json),
  );
  const posture = readFields(rawPosture, POSTURE_FIELDS, 'posture') as unknown as SecurityPostureFacts;
  const attestation = {
    ...readFields(rawAttestation, ATTESTATION_FIELDS, 'attestation'),
    posture,
  } as unknown as AttestationFields;
  validateAttestation(attestation);
  return { attestation, signature };
}

/** Decoded uncompressed point of a validated statement's attestation key. */
export function statementPublicKeyBytes(attestation: AttestationFields): Uint8Array {
  return decodeBase64Strict(attestation.sePublicKey)!;
}

/** Unix ms of a validated statement's timestamp. */
export function statementTimeMs(attestation: AttestationFields): number {
  return Date.parse(attestation.timestamp);
}

function malformed(message: string): AttestationError {
  return new AttestationError('malformed', message);
}

function expectObject(value: unknown, what: string, allowed: readonly string[]): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw malformed(`${what} must be a JSON object`);
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  for (const key of keys) {
    if (!allowed.includes(key)) throw malformed(`${what} has an unknown field '${key.slice(0, 64)}'`);
  }
  for (const key of allowed) {
    if (!Object.hasOwn(record, key)) throw malformed(`${what} is missing '${key}'`);
  }
  return record;
}

function readFields<K extends string>(
  raw: Record<string, unknown>,
  specs: readonly FieldSpec<K>[],
  what: string,
): Record<K, unknown> {
  const out = {} as Record<K, unknown>;
  for (const spec of specs) {
    const value = raw[spec.json];
    const where = `${what}.${spec.json}`;
    switch (spec.type) {
      case 'string':
        if (typeof value !== 'string') throw malformed(`${where} must be a string`);
        break;
      case 'bool':
        if (typeof value !== 'boolean') throw malformed(`${where} must be a boolean`);
        break;
      case 'u64':
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
          throw malformed(`${where} must be a non-negative integer`);
        }
        break;
      case 'string[]':
        if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
          throw malformed(`${where} must be an array of strings`);
        }
        break;
    }
    out[spec.key] = spec.type === 'string[]' ? [...(value as string[])] : value;
  }
  return out;
}

/** Semantic checks shared by build and parse, so a node never signs what a peer would reject. */
function validateAttestation(a: AttestationFields): void {
  const text = (value: string, where: string) => {
    if (typeof value !== 'string' || value.length > MAX_TEXT || CONTROL.test(value)) {
      throw malformed(`${where} must be printable text of at most ${MAX_TEXT} characters`);
    }
  };
  text(a.chipName, 'chip_name');
  text(a.hardwareModel, 'hardware_model');
  text(a.version, 'version');
  text(a.platform, 'platform');
  if (!Number.isSafeInteger(a.unifiedMemoryBytes) || a.unifiedMemoryBytes < 0) {
    throw malformed('unified_memory_bytes must be a non-negative integer');
  }
  if (!HEX64.test(a.nodeEndpointId)) throw malformed('node_endpoint_id must be 64 lower-case hex digits');
  const inferenceKey = decodeBase64Strict(a.inferencePublicKey);
  if (inferenceKey?.byteLength !== 32) throw malformed('inference_public_key must be base64 of 32 bytes');
  const point = decodeBase64Strict(a.sePublicKey);
  if (point?.byteLength !== P256_POINT_BYTES)
    throw malformed('se_public_key must be base64 of a 65-byte point');
  publicKeyFromPoint(point);
  if (a.binaryHash !== '' && !HEX64.test(a.binaryHash)) {
    throw malformed('binary_hash must be 64 lower-case hex digits');
  }
  const m = RFC3339.exec(a.timestamp);
  const time = Date.parse(a.timestamp);
  if (!m || !Number.isFinite(time) || Number(m[2]) > 12 || Number(m[3]) > 31 || Number(m[4]) > 23) {
    throw malformed('timestamp must be RFC 3339');
  }
  if (!(KEY_STORAGES as readonly string[]).includes(a.keyStorage)) {
    throw malformed(`key_storage must be one of ${KEY_STORAGES.join(', ')}`);
  }
  const p = a.posture;
  text(p.platform, 'posture.platform');
  text(p.hardeningVersion, 'posture.hardening_version');
  if (!/^([0-3]|unknown)$/.test(p.ptraceScope))
    throw malformed('posture.ptrace_scope must be 0-3 or unknown');
  if (!BOUNDARIES.includes(p.plaintextBoundary)) {
    throw malformed(`posture.plaintext_boundary must be one of ${BOUNDARIES.join(', ')}`);
  }
  if (p.unsafeEnvironment.length > MAX_ENV_NAMES || p.unsafeEnvironment.some((n) => !ENV_NAME.test(n))) {
    throw malformed('posture.unsafe_environment must list at most 64 variable or flag names');
  }
  if (
    p.sipEnabled !== a.sipEnabled ||
    p.secureBootEnabled !== a.secureBootEnabled ||
    p.rdmaDisabled !== a.rdmaDisabled ||
    p.platform !== a.platform ||
    p.binaryHash !== a.binaryHash
  ) {
    throw malformed('top-level posture fields disagree with the posture object');
  }
}
