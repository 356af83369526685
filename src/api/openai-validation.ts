/**
 * Request validation for the OpenAI routes. Pure: bytes or parsed JSON in, a typed request
 * or an InvalidParamError out. Messages name the offending field but never quote a value,
 * since values are prompt content.
 */
import { InvalidRequestError } from '../errors.ts';

/** An invalid request field. `param` is the OpenAI error `param` (e.g. "messages[0].role"). */
export class InvalidParamError extends InvalidRequestError {
  declare readonly param: string;
  constructor(param: string, message: string, code = 'invalid_request') {
    super(message, code, param);
  }
}

// ---------------------------------------------------------------- request shapes

export type ChatRole = 'system' | 'developer' | 'user' | 'assistant' | 'tool' | 'function';

export interface ChatTextPart {
  type: 'text';
  text: string;
}
export interface ChatImagePart {
  type: 'image_url';
  image_url: { url: string; detail?: string };
}
/** Other part kinds (input_audio, file, refusal...) pass through to the backend unchanged. */
export interface ChatOtherPart {
  type: string;
  [key: string]: unknown;
}
export type ChatContentPart = ChatTextPart | ChatImagePart | ChatOtherPart;

export interface ChatMessage {
  role: ChatRole;
  content: string | ChatContentPart[] | null;
  name?: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
  [key: string]: unknown;
}

export interface StreamOptions {
  include_usage?: boolean;
  [key: string]: unknown;
}

/** Sampling fields shared by chat and text completions. */
export interface SamplingFields {
  model: string;
  stream?: boolean;
  stream_options?: StreamOptions;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  n?: number;
  stop?: string | string[] | null;
  presence_penalty?: number;
  frequency_penalty?: number;
  seed?: number;
  user?: string;
  /** Unknown fields are kept and forwarded: backends differ in what they accept. */
  [key: string]: unknown;
}

export interface ChatCompletionRequest extends SamplingFields {
  messages: ChatMessage[];
  max_completion_tokens?: number;
  logprobs?: boolean;
  top_logprobs?: number;
  response_format?: { type: string; [key: string]: unknown };
  tools?: unknown[];
  tool_choice?: unknown;
}

export type TokenArray = number[];

export interface CompletionRequest extends SamplingFields {
  prompt: string | string[] | TokenArray | TokenArray[];
  echo?: boolean;
  suffix?: string | null;
  best_of?: number;
  logprobs?: number | null;
}

export interface EmbeddingsRequest {
  model: string;
  input: string | string[] | TokenArray | TokenArray[];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
  user?: string;
  [key: string]: unknown;
}

export type ResponsesRole = 'user' | 'system' | 'developer' | 'assistant';

export interface ResponsesInputText {
  type: 'input_text';
  text: string;
}
export interface ResponsesOutputText {
  type: 'output_text';
  text: string;
  annotations?: unknown[];
}
export interface ResponsesInputImage {
  type: 'input_image';
  image_url: string;
  detail?: 'low' | 'high' | 'auto';
}
export interface ResponsesRefusal {
  type: 'refusal';
  refusal: string;
}
export type ResponsesContentPart =
  | ResponsesInputText
  | ResponsesOutputText
  | ResponsesInputImage
  | ResponsesRefusal;

export interface ResponsesMessageItem {
  type?: 'message';
  role: ResponsesRole;
  content: string | ResponsesContentPart[];
  id?: string;
  status?: string;
}

export interface ResponsesTextFormat {
  type: 'text' | 'json_object' | 'json_schema';
  name?: string;
  schema?: Record<string, unknown>;
  description?: string;
  strict?: boolean | null;
}

export interface ResponsesRequest {
  model: string;
  input: string | ResponsesMessageItem[];
  instructions?: string | null;
  max_output_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stream?: boolean | null;
  user?: string;
  metadata?: Record<string, string> | null;
  text?: { format?: ResponsesTextFormat };
  [key: string]: unknown;
}

// ---------------------------------------------------------------- primitives

type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function fail(param: string, expected: string, value: unknown): never {
  throw new InvalidParamError(param, `Invalid '${param}': expected ${expected}, got ${typeName(value)}`);
}

function missing(param: string): never {
  throw new InvalidParamError(param, `Missing required parameter: '${param}'`);
}

/** Only the value's kind is reported, never the value itself. */
function checkString(param: string, value: unknown, opts: { nonEmpty?: boolean } = {}): string {
  if (typeof value !== 'string') fail(param, 'a string', value);
  if (opts.nonEmpty && value.length === 0) {
    throw new InvalidParamError(param, `Invalid '${param}': must not be empty`);
  }
  return value;
}

function checkNumber(param: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(param, 'a number', value);
  if (value < min || value > max) {
    throw new InvalidParamError(param, `Invalid '${param}': must be between ${min} and ${max}`);
  }
  return value;
}

function checkInt(param: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(param, 'an integer', value);
  if (value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `between ${min} and ${max}`;
    throw new InvalidParamError(param, `Invalid '${param}': must be ${range}`);
  }
  return value;
}

function checkBool(param: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(param, 'a boolean', value);
  return value;
}

function checkOneOf<T extends string>(param: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidParamError(param, `Invalid '${param}': expected one of ${allowed.join(', ')}`);
  }
  return value as T;
}

/** Runs `check` when the field is present and not null (OpenAI treats null as absent). */
function optional(body: Obj, key: string, check: (param: string, value: unknown) => unknown): void {
  const value = body[key];
  if (value !== undefined && value !== null) check(key, value);
}

function requireObject(body: unknown): Obj {
  if (!isObject(body)) {
    throw new InvalidParamError('body', `Request body must be a JSON object, got ${typeName(body)}`);
  }
  return body;
}

function checkModel(body: Obj): string {
  if (body.model === undefined || body.model === null) missing('model');
  return checkString('model', body.model, { nonEmpty: true });
}

// ---------------------------------------------------------------- body parsing

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes and parses a JSON request body; it must be a JSON object. */
export function parseJsonBody(bytes: Uint8Array): Obj {
  if (bytes.byteLength === 0) throw new InvalidParamError('body', 'Request body is empty; expected JSON');
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new InvalidParamError('body', 'Request body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // The parser's message quotes the input, so it is not passed on.
    throw new InvalidParamError('body', 'Request body is not valid JSON');
  }
  return requireObject(value);
}

// ---------------------------------------------------------------- shared sampling fields

function checkStop(param: string, value: unknown): void {
  if (typeof value === 'string') return;
  if (!Array.isArray(value)) fail(param, 'a string or an array of strings', value);
  if (value.length > 16) throw new InvalidParamError(param, `Invalid '${param}': at most 16 sequences`);
  value.forEach((item, i) => {
    checkString(`${param}[${i}]`, item);
  });
}

function checkSampling(body: Obj): void {
  optional(body, 'stream', checkBool);
  optional(body, 'stream_options', (param, value) => {
    if (!isObject(value)) fail(param, 'an object', value);
    if (value.include_usage !== undefined) checkBool(`${param}.include_usage`, value.include_usage);
  });
  optional(body, 'max_tokens', (p, v) => checkInt(p, v, 1));
  optional(body, 'temperature', (p, v) => checkNumber(p, v, 0, 2));
  optional(body, 'top_p', (p, v) => checkNumber(p, v, 0, 1));
  optional(body, 'n', (p, v) => checkInt(p, v, 1, 128));
  optional(body, 'stop', checkStop);
  optional(body, 'presence_penalty', (p, v) => checkNumber(p, v, -2, 2));
  optional(body, 'frequency_penalty', (p, v) => checkNumber(p, v, -2, 2));
  optional(body, 'seed', (p, v) => checkInt(p, v, Number.MIN_SAFE_INTEGER));
  optional(body, 'user', checkString);
}

// ---------------------------------------------------------------- chat completions

const CHAT_ROLES: readonly ChatRole[] = ['system', 'developer', 'user', 'assistant', 'tool', 'function'];

function checkChatPart(param: string, part: unknown): void {
  if (!isObject(part)) fail(param, 'an object', part);
  const type = checkString(`${param}.type`, part.type, { nonEmpty: true });
  if (type === 'text') {
    checkString(`${param}.text`, part.text);
  } else if (type === 'image_url') {
    const image = part.image_url;
    if (!isObject(image)) fail(`${param}.image_url`, 'an object', image);
    checkString(`${param}.image_url.url`, image.url, { nonEmpty: true });
  }
}

function checkChatMessage(param: string, message: unknown): void {
  if (!isObject(message)) fail(param, 'an object', message);
  if (message.role === undefined) missing(`${param}.role`);
  const role = checkOneOf(`${param}.role`, message.role, CHAT_ROLES);
  const content = message.content;
  const hasToolCalls = Array.isArray(message.tool_calls) || isObject(message.function_call);
  if (content === undefined || content === null) {
    // Only an assistant turn that calls tools may omit its content.
    if (role === 'assistant' && hasToolCalls) return;
    missing(`${param}.content`);
  }
  if (typeof content === 'string') {
    // fall through to the tool checks
  } else if (Array.isArray(content)) {
    if (content.length === 0) {
      throw new InvalidParamError(
        `${param}.content`,
        `Invalid '${param}.content': must not be an empty array`,
      );
    }
    content.forEach((part, i) => {
      checkChatPart(`${param}.content[${i}]`, part);
    });
  } else {
    fail(`${param}.content`, 'a string or an array of content parts', content);
  }
  if (message.name !== undefined) checkString(`${param}.name`, message.name);
  if (message.tool_calls !== undefined && !Array.isArray(message.tool_calls)) {
    fail(`${param}.tool_calls`, 'an array', message.tool_calls);
  }
  if (role === 'tool') checkString(`${param}.tool_call_id`, message.tool_call_id, { nonEmpty: true });
}

export function validateChatCompletion(input: unknown): ChatCompletionRequest {
  const body = requireObject(input);
  checkModel(body);
  const messages = body.messages;
  if (messages === undefined || messages === null) missing('messages');
  if (!Array.isArray(messages)) fail('messages', 'an array', messages);
  if (messages.length === 0) throw new InvalidParamError('messages', "Invalid 'messages': must not be empty");
  messages.forEach((message, i) => {
    checkChatMessage(`messages[${i}]`, message);
  });
  checkSampling(body);
  optional(body, 'max_completion_tokens', (p, v) => checkInt(p, v, 1));
  optional(body, 'logprobs', checkBool);
  optional(body, 'top_logprobs', (p, v) => checkInt(p, v, 0, 20));
  optional(body, 'response_format', (param, value) => {
    if (!isObject(value)) fail(param, 'an object', value);
    checkOneOf(`${param}.type`, value.type, ['text', 'json_object', 'json_schema']);
  });
  optional(body, 'tools', (param, value) => {
    if (!Array.isArray(value)) fail(param, 'an array', value);
    value.forEach((tool, i) => {
      if (!isObject(tool)) fail(`${param}[${i}]`, 'an object', tool);
      checkString(`${param}[${i}].type`, tool.type, { nonEmpty: true });
    });
  });
  return body as ChatCompletionRequest;
}

// ---------------------------------------------------------------- completions & embeddings

function isTokenArray(value: unknown): value is TokenArray {
  return Array.isArray(value) && value.every((t) => Number.isInteger(t) && (t as number) >= 0);
}

/** string | string[] | token[] | token[][]; arrays must be non-empty. */
function checkTextOrTokens(param: string, value: unknown): void {
  if (value === undefined || value === null) missing(param);
  if (typeof value === 'string') return;
  const expected = 'a string, an array of strings, or an array of token ids';
  if (!Array.isArray(value)) fail(param, expected, value);
  if (value.length === 0) throw new InvalidParamError(param, `Invalid '${param}': must not be empty`);
  if (value.every((v) => typeof v === 'string')) return;
  if (isTokenArray(value)) return;
  value.forEach((item, i) => {
    if (!isTokenArray(item) || item.length === 0) {
      fail(`${param}[${i}]`, 'a string or a non-empty array of token ids (all items of one kind)', item);
    }
  });
}

export function validateCompletion(input: unknown): CompletionRequest {
  const body = requireObject(input);
  checkModel(body);
  checkTextOrTokens('prompt', body.prompt);
  checkSampling(body);
  optional(body, 'echo', checkBool);
  optional(body, 'suffix', checkString);
  optional(body, 'best_of', (p, v) => checkInt(p, v, 1, 20));
  optional(body, 'logprobs', (p, v) => checkInt(p, v, 0, 5));
  return body as CompletionRequest;
}

export function validateEmbeddings(input: unknown): EmbeddingsRequest {
  const body = requireObject(input);
  checkModel(body);
  checkTextOrTokens('input', body.input);
  optional(body, 'encoding_format', (p, v) => checkOneOf(p, v, ['float', 'base64']));
  optional(body, 'dimensions', (p, v) => checkInt(p, v, 1));
  optional(body, 'user', checkString);
  return body as EmbeddingsRequest;
}

// ---------------------------------------------------------------- responses

const RESPONSES_ROLES: readonly ResponsesRole[] = ['user', 'system', 'developer', 'assistant'];

function checkResponsesPart(param: string, part: unknown): void {
  if (!isObject(part)) fail(param, 'an object', part);
  const type = checkOneOf(`${param}.type`, part.type, [
    'input_text',
    'output_text',
    'input_image',
    'refusal',
  ]);
  if (type === 'input_text' || type === 'output_text') checkString(`${param}.text`, part.text);
  else if (type === 'refusal') checkString(`${param}.refusal`, part.refusal);
  else {
    // Only inline or remote URLs: uploaded file ids do not exist in a mesh.
    if (part.image_url === undefined || part.image_url === null) missing(`${param}.image_url`);
    checkString(`${param}.image_url`, part.image_url, { nonEmpty: true });
    if (part.detail !== undefined) checkOneOf(`${param}.detail`, part.detail, ['low', 'high', 'auto']);
  }
}

function checkResponsesItem(param: string, item: unknown): void {
  if (!isObject(item)) fail(param, 'an object', item);
  if (item.type !== undefined && item.type !== 'message') {
    throw new InvalidParamError(
      `${param}.type`,
      `Unsupported '${param}.type': only message items (roles user, system, developer, assistant) are supported`,
      'unsupported_parameter',
    );
  }
  if (item.role === undefined) missing(`${param}.role`);
  checkOneOf(`${param}.role`, item.role, RESPONSES_ROLES);
  const content = item.content;
  if (content === undefined || content === null) missing(`${param}.content`);
  if (typeof content === 'string') return;
  if (!Array.isArray(content)) fail(`${param}.content`, 'a string or an array of content parts', content);
  if (content.length === 0) {
    throw new InvalidParamError(`${param}.content`, `Invalid '${param}.content': must not be an empty array`);
  }
  content.forEach((part, i) => {
    checkResponsesPart(`${param}.content[${i}]`, part);
  });
}

/** Features that need server-side state or tool execution this mesh does not have. */
const UNSUPPORTED_RESPONSES_FIELDS = [
  'previous_response_id',
  'conversation',
  'prompt',
  'background',
] as const;

export function validateResponses(input: unknown): ResponsesRequest {
  const body = requireObject(input);
  checkModel(body);
  const value = body.input;
  if (value === undefined || value === null) missing('input');
  if (typeof value !== 'string') {
    if (!Array.isArray(value)) fail('input', 'a string or an array of input items', value);
    if (value.length === 0) throw new InvalidParamError('input', "Invalid 'input': must not be empty");
    value.forEach((item, i) => {
      checkResponsesItem(`input[${i}]`, item);
    });
  }
  for (const key of UNSUPPORTED_RESPONSES_FIELDS) {
    if (body[key] !== undefined && body[key] !== null && body[key] !== false) {
      throw new InvalidParamError(key, `Unsupported parameter: '${key}'`, 'unsupported_parameter');
    }
  }
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    throw new InvalidParamError(
      'tools',
      "Unsupported parameter: 'tools' on /v1/responses; use /v1/chat/completions for tool calling",
      'unsupported_parameter',
    );
  }
  optional(body, 'instructions', checkString);
  optional(body, 'max_output_tokens', (p, v) => checkInt(p, v, 1));
  optional(body, 'temperature', (p, v) => checkNumber(p, v, 0, 2));
  optional(body, 'top_p', (p, v) => checkNumber(p, v, 0, 1));
  optional(body, 'stream', checkBool);
  optional(body, 'user', checkString);
  optional(body, 'metadata', (param, v) => {
    if (!isObject(v)) fail(param, 'an object', v);
    for (const [key, item] of Object.entries(v)) checkString(`${param}.${key}`, item);
  });
  optional(body, 'text', (param, v) => {
    if (!isObject(v)) fail(param, 'an object', v);
    if (v.format === undefined || v.format === null) return;
    if (!isObject(v.format)) fail(`${param}.format`, 'an object', v.format);
    const type = checkOneOf(`${param}.format.type`, v.format.type, ['text', 'json_object', 'json_schema']);
    if (type === 'json_schema') {
      checkString(`${param}.format.name`, v.format.name, { nonEmpty: true });
      if (!isObject(v.format.schema)) fail(`${param}.format.schema`, 'an object', v.format.schema);
    }
  });
  return body as ResponsesRequest;
}
