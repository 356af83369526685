/**
 * Errors of the end-to-end encryption layer (SPEC §5). Every failure to parse, authenticate or
 * sequence an envelope or a response stream surfaces as one E2EError with a stable `code`, so
 * callers can end the attempt cleanly (or retry elsewhere) without ever seeing another exception.
 * Messages never contain plaintext, ciphertext or key material.
 */
export type E2EErrorCode =
  | 'bad_magic' // first byte is not 0xE1
  | 'malformed_envelope' // not UTF-8 JSON of the v1 shape, bad base64, wrong lengths
  | 'unsupported_version' // "v" is a number other than 1
  | 'invalid_key' // a public key that is not 32 bytes of standard base64 / raw bytes
  | 'decrypt_failed' // authentication failed under every candidate key
  | 'stale' // x-mesh-sent-at missing, too old or too far in the future
  | 'replay' // ephemeral key already seen inside the replay window
  | 'overloaded' // the replay window is full: refuse rather than forget (fail closed)
  | 'too_large' // envelope or plaintext over the configured cap
  | 'unknown_key' // the keyring holds no usable key
  | 'key_mismatch' // response header key differs from the key the request was sealed to
  | 'bad_frame' // unknown frame type, end frame with data, undecodable payload
  | 'frame_too_large' // frame length over 16 MiB
  | 'out_of_order' // seq gap, duplicate or reorder
  | 'truncated' // the source ended inside the header or a frame
  | 'missing_end' // the source ended cleanly between frames but without an end frame
  | 'data_after_end' // bytes after the end frame
  | 'remote_error' // the host sent an error frame
  | 'closed'; // a sealer or opener used after it finished (programming error)

export class E2EError extends Error {
  readonly code: E2EErrorCode;
  constructor(code: E2EErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'E2EError';
    this.code = code;
  }
}

/** The host's error frame. `remoteMessage` is the host's text, sanitised and length-capped. */
export class E2ERemoteError extends E2EError {
  readonly remoteMessage: string;
  constructor(remoteMessage: string) {
    super('remote_error', `host reported an error: ${remoteMessage}`);
    this.name = 'E2ERemoteError';
    this.remoteMessage = remoteMessage;
  }
}

export function isE2EError(value: unknown): value is E2EError {
  return value instanceof E2EError;
}
