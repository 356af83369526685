// Public surface of the attestation module (SPEC §6). Pure: no HTTP, no libp2p.
export { decodeBase64Strict } from '../encoding/base64.ts';
export { publicKeyFromPoint, verifyP256 } from './ecdsa.ts';
export { AttestationError, type AttestationErrorCode } from './errors.ts';
export {
  answerChallenge,
  CHALLENGE_DOMAIN,
  challengeBytes,
  type LivenessState,
  LivenessTracker,
  MAX_MISSES,
  NONCE_BYTES,
  verifyChallengeAnswer,
} from './liveness.ts';
export { PINS_FILE, type PinEntry, PinStore } from './pins.ts';
export {
  type AttestationPolicy,
  type AttestationTier,
  defaultAttestationPolicy,
  loadAttestationPolicy,
  parseAttestationPolicy,
  REQUIRABLE_POSTURE_FLAGS,
  type RequirablePostureFlag,
  type RequiredPosture,
  TIERS,
  tierAtLeast,
  unmetPosture,
} from './policy.ts';
export {
  DEFAULT_SE_KEY_TAG,
  SecureEnclaveKeyProvider,
  type SecureEnclavePlatform,
} from './providers/secure-enclave.ts';
export {
  autoKeyStorage,
  hostProviderEnvironment,
  type ProviderEnvironment,
  selectAttestationKeyProvider,
} from './providers/select.ts';
export { SOFTWARE_KEY_FILE, SoftwareKeyProvider } from './providers/software.ts';
export { Tpm2KeyProvider, type Tpm2Runner, tpmSignatureToDer } from './providers/tpm2.ts';
export {
  type AttestationKeyChoice,
  type AttestationKeyProvider,
  isHardwareStorage,
  KEY_STORAGES,
  type KeyStorage,
} from './providers/types.ts';
export { ATTESTATION_DOMAIN, attestationSigningBytes } from './signing-bytes.ts';
export {
  type AttestationFields,
  buildStatement,
  encodeStatement,
  MAX_STATEMENT_BYTES,
  parseStatement,
  type SignedStatement,
  type StatementFacts,
} from './statement.ts';
export {
  type AttestationVerdict,
  AttestationVerifierCache,
  keyFingerprint,
  MAX_FUTURE_SKEW_MS,
  MAX_STATEMENT_AGE_MS,
  type VerifyAttestationInput,
  verifyAttestation,
} from './verify.ts';
