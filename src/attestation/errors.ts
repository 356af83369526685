/**
 * Typed failures of attestation parsing and verification. `code` is stable and shown to
 * operators (status, logs); messages never contain keys, nonces or signatures.
 */
export type AttestationErrorCode =
  | 'missing' // no statement at all
  | 'malformed' // not a well-formed statement (JSON, schema, encodings)
  | 'bad_signature' // signature does not verify for se_public_key
  | 'endpoint_mismatch' // node_endpoint_id is not the peer's endpoint id
  | 'inference_key_mismatch' // inference_public_key is not the announced key
  | 'posture' // posture does not meet the verifier's policy
  | 'timestamp_future' // more than 30 s in the future
  | 'expired' // older than 660 s
  | 'binary_hash' // binary hash not in the policy allowlist
  | 'pin_mismatch' // attestation key differs from the pinned key for this endpoint
  | 'tier_below_minimum' // valid, but below the policy's minimum tier
  | 'provider' // the local key provider failed
  | 'liveness'; // a liveness challenge failed

export class AttestationError extends Error {
  readonly code: AttestationErrorCode;
  constructor(code: AttestationErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AttestationError';
    this.code = code;
  }
}
