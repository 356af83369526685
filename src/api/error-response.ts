import { type ErrorKind, InvalidRequestError, MeshError } from '../errors.ts';
import { jsonResponse, type UpstreamResponse } from '../http/exchange.ts';

/** The one place where typed errors become HTTP statuses and OpenAI error bodies. */
const STATUS: Record<ErrorKind, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  no_capacity: 503,
  policy_refused: 503,
  upstream_failed: 502,
  upstream_timeout: 504,
  internal: 500,
};

const TYPE: Record<ErrorKind, string> = {
  invalid_request: 'invalid_request_error',
  unauthorized: 'invalid_request_error',
  forbidden: 'invalid_request_error',
  not_found: 'invalid_request_error',
  method_not_allowed: 'invalid_request_error',
  too_large: 'invalid_request_error',
  unsupported_media_type: 'invalid_request_error',
  rate_limited: 'rate_limit_error',
  no_capacity: 'server_error',
  policy_refused: 'policy_error',
  upstream_failed: 'server_error',
  upstream_timeout: 'server_error',
  internal: 'server_error',
};

export interface OpenAiErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

export function errorBody(error: unknown): { status: number; body: OpenAiErrorBody } {
  if (error instanceof MeshError) {
    return {
      status: STATUS[error.kind],
      body: {
        error: {
          message: error.message,
          type: TYPE[error.kind],
          code: error.code,
          param: error instanceof InvalidRequestError ? (error.param ?? null) : null,
        },
      },
    };
  }
  // Unknown failures never leak internals (they may quote request content).
  return {
    status: 500,
    body: { error: { message: 'Internal error', type: 'server_error', code: 'internal_error', param: null } },
  };
}

export function errorResponse(error: unknown): UpstreamResponse {
  const { status, body } = errorBody(error);
  return jsonResponse(status, body);
}

/** An SSE event carrying an error, for a stream that already started when the failure came. */
export function sseErrorEvent(error: unknown): Uint8Array {
  return Buffer.from(`data: ${JSON.stringify(errorBody(error).body)}\n\n`);
}
