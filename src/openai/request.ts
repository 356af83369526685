/**
 * Bytes in, a typed OpenAI request out (or an InvalidRequestError naming the field), and back to
 * bytes for a hop over the mesh or to a pass-through server: the request re-serialized from what
 * was validated, unknown fields included.
 */
import type { z } from 'zod';
import { InvalidRequestError, MeshError } from '../errors.ts';
import type { ApiRequest } from '../http/exchange.ts';
import { invalidRequestFrom } from './errors.ts';
import { ChatCompletionRequest, CompletionRequest, EmbeddingsRequest, ResponsesRequest } from './schemas.ts';

type Obj = Record<string, unknown>;

/** The OpenAI paths a backend serves (/v1/responses is translated to chat completions first). */
export const BACKEND_PATHS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings'] as const;
export type BackendPath = (typeof BACKEND_PATHS)[number];

/** A validated request for a backend: its path decides the body's type. */
export type OpenAiRequest =
  | { path: '/v1/chat/completions'; body: ChatCompletionRequest }
  | { path: '/v1/completions'; body: CompletionRequest }
  | { path: '/v1/embeddings'; body: EmbeddingsRequest };

const utf8 = new TextDecoder('utf-8', { fatal: true });

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** Decodes and parses a JSON request body; it must be a JSON object. */
export function parseJsonBody(bytes: Uint8Array): Obj {
  if (bytes.byteLength === 0)
    throw new InvalidRequestError('Request body is empty; expected JSON', 'invalid_json', 'body');
  let value: unknown;
  try {
    // The parser's message quotes the input, so it is not passed on.
    value = JSON.parse(utf8.decode(bytes));
  } catch {
    throw new InvalidRequestError('Request body is not valid UTF-8 JSON', 'invalid_json', 'body');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidRequestError(
      `Request body must be a JSON object, got ${typeName(value)}`,
      'invalid_json',
      'body',
    );
  }
  return value as Obj;
}

function validator<T extends z.ZodType>(schema: T): (input: unknown) => z.infer<T> {
  return (input) => {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw new InvalidRequestError(
        `Request body must be a JSON object, got ${typeName(input)}`,
        'invalid_json',
        'body',
      );
    }
    const result = schema.safeParse(input);
    if (!result.success) throw invalidRequestFrom(result.error);
    return result.data;
  };
}

export const validateChatCompletion = validator(ChatCompletionRequest);
export const validateCompletion = validator(CompletionRequest);
export const validateEmbeddings = validator(EmbeddingsRequest);
export const validateResponses = validator(ResponsesRequest);

/** Path without its query string or trailing slashes. */
export function routePath(path: string): string {
  const q = path.indexOf('?');
  return (q === -1 ? path : path.slice(0, q)).replace(/\/+$/, '');
}

export function isBackendPath(path: string): path is BackendPath {
  return (BACKEND_PATHS as readonly string[]).includes(path);
}

/** Validates a backend request (method, path, JSON body) into its typed form. */
export function parseOpenAiRequest(method: string, rawPath: string, bytes: Uint8Array): OpenAiRequest {
  const path = routePath(rawPath);
  if (!isBackendPath(path)) {
    throw new MeshError('not_found', 'not_found', `Hosts serve POST ${BACKEND_PATHS.join(', ')} only`);
  }
  if (method.toUpperCase() !== 'POST') {
    throw new MeshError('method_not_allowed', 'method_not_allowed', `Use POST for ${path}`);
  }
  const json = parseJsonBody(bytes);
  switch (path) {
    case '/v1/chat/completions':
      return { path, body: validateChatCompletion(json) };
    case '/v1/completions':
      return { path, body: validateCompletion(json) };
    case '/v1/embeddings':
      return { path, body: validateEmbeddings(json) };
  }
}

/** Whether the client asked for an SSE answer. */
export function isStreaming(request: OpenAiRequest): boolean {
  return request.path !== '/v1/embeddings' && request.body.stream === true;
}

/** The request as bytes for the next hop: method, path and body only, the client's headers stay here. */
export function serializeOpenAiRequest(request: OpenAiRequest, body: Obj = request.body): ApiRequest {
  return {
    method: 'POST',
    path: request.path,
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(body)),
  };
}
