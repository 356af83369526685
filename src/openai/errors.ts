/**
 * The one place where typed errors become HTTP statuses and OpenAI error bodies
 * `{"error":{message,type,code,param}}`: the front door, the mesh's inbound handler and the
 * backends all answer through here.
 */
import type { z } from 'zod';
import { AllHostsBusyError, type ErrorKind, InvalidRequestError, MeshError } from '../errors.ts';
import { jsonResponse, type UpstreamResponse } from '../http/exchange.ts';

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

/** A parameter this backend cannot honour: refused by name rather than silently ignored. */
export class UnsupportedParameterError extends InvalidRequestError {
  constructor(param: string, why: string) {
    super(`Unsupported parameter '${param}': ${why}`, 'unsupported_parameter', param);
  }
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
  const headers: Record<string, string> = {};
  if (error instanceof AllHostsBusyError) headers['retry-after'] = String(error.retryAfterSeconds);
  return jsonResponse(status, body, headers);
}

/** An SSE event carrying an error, for a stream that already started when the failure came. */
export function sseErrorEvent(error: unknown): Uint8Array {
  return Buffer.from(`data: ${JSON.stringify(errorBody(error).body)}\n\n`);
}

/** "messages[0].content" from zod's path ["messages", 0, "content"]. */
export function paramOf(path: readonly PropertyKey[]): string {
  let param = '';
  for (const key of path) {
    if (typeof key === 'number') param += `[${key}]`;
    else param += param ? `.${String(key)}` : String(key);
  }
  return param || 'body';
}

/**
 * For a value that matched none of a union's options, the issue of the option that got furthest
 * (the longest path): `input[0].role` tells more than `input`. The union's own message stays
 * when no option got past the value itself.
 */
function deepest(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return issue;
  let best: z.core.$ZodIssue | undefined;
  for (const option of issue.errors) {
    const candidate = option[0];
    if (candidate && candidate.path.length > 0 && (!best || candidate.path.length > best.path.length))
      best = candidate;
  }
  return best ? deepest({ ...best, path: [...issue.path, ...best.path] }) : issue;
}

/**
 * The first schema issue as an InvalidRequestError naming the field. zod's messages state the
 * expected kind and bounds; they never quote the value (values are prompt content).
 */
export function invalidRequestFrom(error: z.ZodError): InvalidRequestError {
  const first = error.issues[0];
  if (!first) return new InvalidRequestError('Invalid request');
  const issue = deepest(first);
  const param = paramOf(issue.path);
  if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) {
    return new InvalidRequestError(
      `Missing required parameter: '${param}'`,
      'missing_required_parameter',
      param,
    );
  }
  if (issue.code === 'custom' && issue.params?.unsupported === true) {
    return new InvalidRequestError(
      `Unsupported parameter '${param}': ${issue.message}`,
      'unsupported_parameter',
      param,
    );
  }
  return new InvalidRequestError(`Invalid '${param}': ${issue.message}`, 'invalid_value', param);
}
