/**
 * OpenAI wire helpers shared by the backends: error bodies, SSE framing, and validation of
 * the request fields a backend acts on. Validation throws InvalidRequestError; callers turn it
 * into a 400 response. Messages never quote prompt text.
 */
import { bufferView } from '../encoding/bytes.ts';
import { InvalidRequestError } from '../errors.ts';
import { type HeaderMap, jsonResponse, type UpstreamResponse } from '../http/exchange.ts';

export function errorType(status: number): string {
  if (status === 400 || status === 404 || status === 405 || status === 413) return 'invalid_request_error';
  if (status === 401 || status === 403) return 'authentication_error';
  if (status === 429) return 'rate_limit_error';
  return 'server_error';
}

/** An OpenAI-shaped error response: {"error":{"message","type","code"}}. */
export function openAiError(status: number, code: string, message: string): UpstreamResponse {
  return jsonResponse(status, { error: { message, type: errorType(status), param: null, code } });
}

export const SSE_HEADERS: HeaderMap = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
};

export function sseEvent(value: unknown): Buffer {
  return Buffer.from(`data: ${JSON.stringify(value)}\n\n`);
}

export const SSE_DONE = Buffer.from('data: [DONE]\n\n');

export function sseResponse(body: AsyncIterable<Uint8Array>): UpstreamResponse {
  return { status: 200, headers: { ...SSE_HEADERS }, body };
}

export type JsonObject = Record<string, unknown>;

export function parseJsonObject(body: Uint8Array): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(bufferView(body).toString('utf8'));
  } catch {
    throw new InvalidRequestError('The request body is not valid JSON', 'invalid_json');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidRequestError('The request body must be a JSON object');
  }
  return value as JsonObject;
}

function invalid(param: string, what: string): InvalidRequestError {
  return new InvalidRequestError(`Invalid value for '${param}': ${what}`, 'invalid_value');
}

function optionalNumber(
  body: JsonObject,
  key: string,
  min: number,
  max: number,
  integer = false,
): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    v < min ||
    v > max ||
    (integer && !Number.isInteger(v))
  ) {
    throw invalid(key, `expected ${integer ? 'an integer' : 'a number'} between ${min} and ${max}`);
  }
  return v;
}

export interface SamplingParams {
  /** Upper bound on generated tokens; undefined = until the context is full. */
  maxTokens?: number;
  temperature: number;
  topP: number;
  seed?: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

/** Reads the generation fields common to chat and text completions. */
export function parseSampling(body: JsonObject): SamplingParams {
  const maxTokens =
    optionalNumber(body, 'max_completion_tokens', 1, 1 << 24, true) ??
    optionalNumber(body, 'max_tokens', 1, 1 << 24, true);
  const temperature = optionalNumber(body, 'temperature', 0, 2) ?? 1;
  const topP = optionalNumber(body, 'top_p', 0, 1) ?? 1;
  const seed = optionalNumber(body, 'seed', -(2 ** 53), 2 ** 53, true);
  const n = optionalNumber(body, 'n', 1, 128, true);
  if (n !== undefined && n !== 1) throw invalid('n', 'only n=1 is supported');

  let stop: string[] = [];
  const rawStop = body.stop;
  if (typeof rawStop === 'string') stop = [rawStop];
  else if (Array.isArray(rawStop)) {
    if (rawStop.length > 4 || !rawStop.every((s) => typeof s === 'string')) {
      throw invalid('stop', 'expected a string or up to 4 strings');
    }
    stop = rawStop as string[];
  } else if (rawStop !== undefined && rawStop !== null) throw invalid('stop', 'expected a string or array');
  stop = stop.filter((s) => s.length > 0);

  const stream = body.stream;
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') {
    throw invalid('stream', 'expected a boolean');
  }
  const options = body.stream_options;
  let includeUsage = false;
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object' || Array.isArray(options))
      throw invalid('stream_options', 'expected an object');
    includeUsage = (options as JsonObject).include_usage === true;
  }
  return {
    maxTokens,
    temperature,
    topP,
    seed: seed === undefined ? undefined : seed >>> 0,
    stop,
    stream: stream === true,
    includeUsage,
  };
}

export type ChatRole = 'system' | 'user' | 'assistant';
export interface ChatMessage {
  role: ChatRole;
  text: string;
}

/** Flattens `content` (a string or text parts) into text; other part kinds are refused. */
function contentText(content: unknown, index: number): string {
  if (typeof content === 'string') return content;
  if (content === null || content === undefined) return '';
  if (Array.isArray(content)) {
    let text = '';
    for (const part of content) {
      if (typeof part === 'object' && part !== null) {
        const p = part as JsonObject;
        if ((p.type === 'text' || p.type === 'input_text') && typeof p.text === 'string') {
          text += p.text;
          continue;
        }
      }
      throw invalid(`messages[${index}].content`, 'only text content parts are supported');
    }
    return text;
  }
  throw invalid(`messages[${index}].content`, 'expected a string or an array of content parts');
}

export function parseMessages(body: JsonObject): ChatMessage[] {
  const raw = body.messages;
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new InvalidRequestError("'messages' must be a non-empty array", 'missing_messages');
  }
  return raw.map((m, i): ChatMessage => {
    if (typeof m !== 'object' || m === null || Array.isArray(m))
      throw invalid(`messages[${i}]`, 'expected an object');
    const msg = m as JsonObject;
    const text = contentText(msg.content, i);
    switch (msg.role) {
      case 'system':
      case 'developer':
        return { role: 'system', text };
      case 'user':
        return { role: 'user', text };
      case 'assistant':
        return { role: 'assistant', text };
      case 'tool':
      case 'function':
        // Tool results reach the model as user turns; tool calling itself is not offered.
        return { role: 'user', text };
      default:
        throw invalid(`messages[${i}].role`, 'expected system, developer, user, assistant or tool');
    }
  });
}

/** A completion prompt: text, or pre-tokenized ids. Only a single prompt is supported. */
export function parsePrompt(body: JsonObject): string | number[] {
  let p = body.prompt;
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0];
  if (typeof p === 'string') return p;
  if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0)) return p as number[];
  throw new InvalidRequestError("'prompt' must be a string or one array of token ids", 'invalid_prompt');
}

/** Embedding inputs: strings or token-id arrays, at most 2048 of them, none empty. */
export function parseEmbeddingInput(body: JsonObject): Array<string | number[]> {
  const input = body.input;
  let list: unknown[];
  if (typeof input === 'string') list = [input];
  else if (Array.isArray(input) && input.length > 0 && input.every((t) => typeof t === 'number'))
    list = [input];
  else if (Array.isArray(input)) list = input;
  else throw new InvalidRequestError("'input' must be a string or an array", 'invalid_input');
  if (list.length === 0 || list.length > 2048) throw invalid('input', 'expected 1 to 2048 inputs');
  return list.map((item, i) => {
    if (typeof item === 'string' && item.length > 0) return item;
    if (Array.isArray(item) && item.length > 0 && item.every((t) => Number.isInteger(t) && t >= 0)) {
      return item as number[];
    }
    throw invalid(`input[${i}]`, 'expected a non-empty string or array of token ids');
  });
}

export function parseEncodingFormat(body: JsonObject): 'float' | 'base64' {
  const f = body.encoding_format;
  if (f === undefined || f === null || f === 'float') return 'float';
  if (f === 'base64') return 'base64';
  throw invalid('encoding_format', "expected 'float' or 'base64'");
}

/** Path without its query string. */
export function routePath(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}
