/** End-to-end encrypted inference (SPEC §5): one import for the routing layer. */

export {
  collectEnvelope,
  DEFAULT_MAX_PLAINTEXT_BYTES,
  E2E_MAGIC,
  isEncryptedStream,
  maxEnvelopeBytes,
  type OpenRequestOptions,
  openRequest,
  readSentAt,
  SENT_AT_HEADER,
  sealRequest,
  stampSentAt,
} from './envelope.ts';
export { E2EError, type E2EErrorCode, E2ERemoteError, isE2EError } from './errors.ts';
export {
  DEFAULT_GRACE_MS,
  DEFAULT_ROTATION_MS,
  decodeInferencePublicKey,
  InferenceKeyring,
  type InferenceKeyringOptions,
  type InferenceKeySource,
  type InferencePublicKeyInfo,
} from './inference-keys.ts';
export {
  type EphemeralExchange,
  PreparedExchanges,
  type PreparedExchangesOptions,
} from './prepared-exchanges.ts';
export { ReplayGuard, type ReplayGuardOptions } from './replay-guard.ts';
export {
  MAX_FRAME_LENGTH,
  MIN_FRAME_LENGTH,
  type OpenResponseOptions,
  openResponse,
  RESPONSE_HEADER_BYTES,
  ResponseOpener,
  type ResponseOpenerOptions,
  ResponseSealer,
  type ResponseSealerOptions,
} from './response-frames.ts';
export { HostSession, type HostSessionInit, SenderSession, type SenderSessionInit } from './sessions.ts';
