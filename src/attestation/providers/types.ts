/** Where an attestation key lives (SPEC §6.1). Doubles as the statement's `key_storage`. */
export type KeyStorage = 'tpm2' | 'secure-enclave' | 'software';
export type AttestationKeyChoice = 'auto' | KeyStorage;

export const KEY_STORAGES: readonly KeyStorage[] = ['tpm2', 'secure-enclave', 'software'];

/** True for storages that claim the private key cannot leave a hardware module. */
export function isHardwareStorage(storage: KeyStorage): boolean {
  return storage === 'tpm2' || storage === 'secure-enclave';
}

/** A P-256 signing key kept by some store. One instance per process; the key survives restarts. */
export interface AttestationKeyProvider {
  readonly kind: KeyStorage;
  readonly hardware: boolean;
  /** Uncompressed SEC1 point, 65 bytes. */
  publicKey(): Uint8Array;
  /** DER ECDSA P-256 over SHA-256(data). */
  sign(data: Uint8Array): Promise<Uint8Array>;
  close?(): Promise<void>;
}
