/**
 * Typed errors shared by every layer. Each carries a stable `code`; the mapping to
 * HTTP statuses and OpenAI error shapes lives in one place: src/openai/errors.ts.
 * Messages must never contain prompt text, completions, keys or tokens.
 */
export type ErrorKind =
  | 'invalid_request' // 400
  | 'unauthorized' // 401, a missing or wrong API key / console credential
  | 'forbidden' // 403, e.g. a Host header this server does not answer to
  | 'not_found' // 404
  | 'method_not_allowed' // 405
  | 'too_large' // 413
  | 'unsupported_media_type' // 415
  | 'rate_limited' // 429
  | 'no_capacity' // 503
  | 'policy_refused' // 503, with a specific code (no_attested_host, no_encrypted_host)
  | 'upstream_failed' // 502
  | 'upstream_timeout' // 504
  | 'internal'; // 500

export class MeshError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  constructor(kind: ErrorKind, code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.kind = kind;
    this.code = code;
  }
}

export class InvalidRequestError extends MeshError {
  /** The offending request field, e.g. "messages[0].role", when one is to blame. */
  readonly param: string | undefined;
  constructor(message: string, code = 'invalid_request', param?: string) {
    super('invalid_request', code, message);
    this.param = param;
  }
}

export class ModelNotFoundError extends MeshError {
  constructor(model: string) {
    super('not_found', 'model_not_found', `The model '${model}' is not served by any node in this mesh`);
  }
}

export class BodyTooLargeError extends MeshError {
  constructor(limitBytes: number) {
    super('too_large', 'request_too_large', `Request body exceeds the limit of ${limitBytes} bytes`);
  }
}

/** No host could take the request (all busy, unreachable, or none left to try). */
export class NoCapacityError extends MeshError {
  constructor(message: string, code = 'no_capacity') {
    super('no_capacity', code, message);
  }
}

/** A security policy refused every candidate host. `code` is e.g. no_attested_host. */
export class PolicyRefusedError extends MeshError {
  constructor(code: string, message: string) {
    super('policy_refused', code, message);
  }
}

/** The chosen host failed (connection lost, bad frames, decrypt failure...). */
export class UpstreamError extends MeshError {
  constructor(message: string, code = 'upstream_failed', options?: ErrorOptions) {
    super('upstream_failed', code, message, options);
  }
}

/**
 * The peer's connection closed moments ago and a short dial did not bring it back: it most
 * likely crashed, so it is not tried through other members either.
 */
export class PeerLostError extends UpstreamError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 'peer_unreachable', options);
  }
}

export class UpstreamTimeoutError extends MeshError {
  constructor(message: string) {
    super('upstream_timeout', 'upstream_timeout', message);
  }
}

/** The request lacks a valid credential (API key or console credential). */
export class UnauthorizedError extends MeshError {
  constructor(message: string, code = 'invalid_api_key') {
    super('unauthorized', code, message);
  }
}

/** A sender exceeded a per-peer or global budget; others are still served. */
export class RateLimitedError extends MeshError {
  constructor(message: string, code = 'rate_limited') {
    super('rate_limited', code, message);
  }
}

/**
 * Every host of the model stayed full for the whole bounded wait (or the wait queue is full):
 * 429 with a Retry-After hint.
 */
export class AllHostsBusyError extends RateLimitedError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number) {
    super(message, 'all_hosts_busy');
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** A user-facing configuration problem (bad flag, unreadable file). Printed by the CLI, exit 2. */
export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** A short description for logs: the message only, never the request that caused it. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
