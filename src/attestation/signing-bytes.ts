import type { SecurityPostureFacts } from '../hardening/types.ts';
import type { KeyStorage } from './providers/types.ts';

/**
 * The attested facts (SPEC §6.2), camelCase in code, snake_case on the wire.
 * Top-level sip/secure boot/rdma/platform/binary hash repeat the posture values (the original
 * mesh-llm fields); a statement where they disagree is malformed.
 */
export interface AttestationFields {
  chipName: string;
  hardwareModel: string;
  unifiedMemoryBytes: number;
  sipEnabled: boolean;
  secureBootEnabled: boolean;
  rdmaDisabled: boolean;
  /** Lower-case hex of the 32-byte endpoint id. */
  nodeEndpointId: string;
  /** Standard base64 of the 32-byte X25519 inference key. */
  inferencePublicKey: string;
  /** Standard base64 of the uncompressed SEC1 P-256 point (65 bytes). */
  sePublicKey: string;
  /** Lower-case hex SHA-256, or '' when the code could not be measured. */
  binaryHash: string;
  /** RFC 3339. */
  timestamp: string;
  version: string;
  platform: string;
  keyStorage: KeyStorage;
  posture: SecurityPostureFacts;
}

export type FieldType = 'string' | 'u64' | 'bool' | 'string[]';

export interface FieldSpec<K extends string> {
  json: string;
  key: K;
  type: FieldType;
}

/**
 * Canonical field order of the attestation object. The signing bytes encode the fields in
 * exactly this order; `posture` (last) is encoded as the fields of POSTURE_FIELDS in their order.
 * Changing this order or adding a field requires a new domain string (…-v2:).
 */
export const ATTESTATION_FIELDS: readonly FieldSpec<Exclude<keyof AttestationFields, 'posture'>>[] = [
  { json: 'chip_name', key: 'chipName', type: 'string' },
  { json: 'hardware_model', key: 'hardwareModel', type: 'string' },
  { json: 'unified_memory_bytes', key: 'unifiedMemoryBytes', type: 'u64' },
  { json: 'sip_enabled', key: 'sipEnabled', type: 'bool' },
  { json: 'secure_boot_enabled', key: 'secureBootEnabled', type: 'bool' },
  { json: 'rdma_disabled', key: 'rdmaDisabled', type: 'bool' },
  { json: 'node_endpoint_id', key: 'nodeEndpointId', type: 'string' },
  { json: 'inference_public_key', key: 'inferencePublicKey', type: 'string' },
  { json: 'se_public_key', key: 'sePublicKey', type: 'string' },
  { json: 'binary_hash', key: 'binaryHash', type: 'string' },
  { json: 'timestamp', key: 'timestamp', type: 'string' },
  { json: 'version', key: 'version', type: 'string' },
  { json: 'platform', key: 'platform', type: 'string' },
  { json: 'key_storage', key: 'keyStorage', type: 'string' },
];

/** Canonical order of the posture object (JSON key `posture`), encoded after the fields above. */
export const POSTURE_FIELDS: readonly FieldSpec<keyof SecurityPostureFacts>[] = [
  { json: 'platform', key: 'platform', type: 'string' },
  { json: 'sip_enabled', key: 'sipEnabled', type: 'bool' },
  { json: 'sip_known', key: 'sipKnown', type: 'bool' },
  { json: 'rdma_disabled', key: 'rdmaDisabled', type: 'bool' },
  { json: 'rdma_known', key: 'rdmaKnown', type: 'bool' },
  { json: 'secure_boot_enabled', key: 'secureBootEnabled', type: 'bool' },
  { json: 'debugger_blocked', key: 'debuggerBlocked', type: 'bool' },
  { json: 'core_dumps_disabled', key: 'coreDumpsDisabled', type: 'bool' },
  { json: 'inspector_closed', key: 'inspectorClosed', type: 'bool' },
  { json: 'environment_clean', key: 'environmentClean', type: 'bool' },
  { json: 'started_with_unsafe_environment', key: 'startedWithUnsafeEnvironment', type: 'bool' },
  { json: 'reexecuted_clean', key: 'reexecutedClean', type: 'bool' },
  { json: 'unsafe_environment', key: 'unsafeEnvironment', type: 'string[]' },
  { json: 'ptrace_scope', key: 'ptraceScope', type: 'string' },
  { json: 'binary_hash', key: 'binaryHash', type: 'string' },
  { json: 'plaintext_boundary', key: 'plaintextBoundary', type: 'string' },
  { json: 'hardening_version', key: 'hardeningVersion', type: 'string' },
];

export const ATTESTATION_DOMAIN = 'mesh-llm-hardware-attestation-v1:';

/** Append-only little-endian writer for the canonical encoding. */
class Writer {
  readonly #parts: Uint8Array[] = [];
  raw(bytes: Uint8Array): void {
    this.#parts.push(bytes);
  }
  u32(value: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value);
    this.#parts.push(b);
  }
  u64(value: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(value));
    this.#parts.push(b);
  }
  bool(value: boolean): void {
    this.#parts.push(Uint8Array.of(value ? 1 : 0));
  }
  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.u32(bytes.byteLength);
    this.#parts.push(bytes);
  }
  bytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.#parts));
  }
}

function writeField(writer: Writer, type: FieldType, value: unknown): void {
  switch (type) {
    case 'string':
      writer.string(value as string);
      return;
    case 'u64':
      writer.u64(value as number);
      return;
    case 'bool':
      writer.bool(value as boolean);
      return;
    case 'string[]': {
      const items = value as string[];
      writer.u32(items.length);
      for (const item of items) writer.string(item);
      return;
    }
  }
}

/**
 * Canonical bytes signed by the attestation key:
 *   ASCII "mesh-llm-hardware-attestation-v1:"
 *   then each field of ATTESTATION_FIELDS in order, then each field of POSTURE_FIELDS in order;
 *   string = u32-LE byte length || UTF-8; integer = u64-LE; boolean = one byte 0/1;
 *   array of strings = u32-LE count || each string.
 * Callers must pass validated fields (see statement.ts); this function does not validate.
 */
export function attestationSigningBytes(fields: AttestationFields): Uint8Array {
  const writer = new Writer();
  writer.raw(Buffer.from(ATTESTATION_DOMAIN, 'ascii'));
  for (const spec of ATTESTATION_FIELDS) writeField(writer, spec.type, fields[spec.key]);
  for (const spec of POSTURE_FIELDS) writeField(writer, spec.type, fields.posture[spec.key]);
  return writer.bytes();
}
