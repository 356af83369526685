/**
 * The OpenAI Responses API (`POST /v1/responses`) on top of chat completions: the request
 * becomes a chat request, and the chat answer (JSON or SSE) becomes a `response` object or
 * the Responses event stream. Backends only ever see chat completions.
 */
import { randomBytes } from 'node:crypto';
import { MeshError, UpstreamError } from '../errors.ts';
import type {
  ChatCompletionRequest,
  ChatContentPart,
  ChatMessage,
  ChatRole,
  ResponsesContentPart,
  ResponsesRequest,
} from './openai-validation.ts';
import { formatSse, parseSse } from './sse.ts';

/** Injected clock and id source, so tests get deterministic output. */
export interface TranslationContext {
  /** Unix milliseconds. */
  now?: () => number;
  /** A fresh id with the given prefix, e.g. "resp" → "resp_…". */
  newId?: (prefix: string) => string;
}

function defaultId(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString('hex')}`;
}

// ---------------------------------------------------------------- response shapes

export interface ResponseOutputText {
  type: 'output_text';
  text: string;
  annotations: unknown[];
  logprobs?: unknown[];
}
export interface ResponseRefusal {
  type: 'refusal';
  refusal: string;
}
export interface ResponseOutputMessage {
  type: 'message';
  id: string;
  status: 'in_progress' | 'completed' | 'incomplete';
  role: 'assistant';
  content: Array<ResponseOutputText | ResponseRefusal>;
}
export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}
export type ResponseStatus = 'in_progress' | 'completed' | 'incomplete' | 'failed';
export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  completed_at: number | null;
  status: ResponseStatus;
  error: { code: string; message: string } | null;
  incomplete_details: { reason: 'max_output_tokens' | 'content_filter' } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  model: string;
  output: ResponseOutputMessage[];
  parallel_tool_calls: boolean;
  previous_response_id: null;
  reasoning: null;
  store: false;
  temperature: number | null;
  text: { format: { type: string; [key: string]: unknown } };
  tool_choice: 'auto';
  tools: [];
  top_p: number | null;
  truncation: 'disabled';
  usage: ResponseUsage | null;
  user: string | null;
  metadata: Record<string, string>;
}

// ---------------------------------------------------------------- request: responses → chat

const ROLE_MAP: Record<string, ChatRole> = {
  user: 'user',
  assistant: 'assistant',
  system: 'system',
  // Local chat templates rarely know "developer"; it has system semantics.
  developer: 'system',
};

function convertContent(parts: string | ResponsesContentPart[]): string | ChatContentPart[] {
  if (typeof parts === 'string') return parts;
  const converted: ChatContentPart[] = parts.map((part) => {
    switch (part.type) {
      case 'input_text':
      case 'output_text':
        return { type: 'text', text: part.text };
      case 'refusal':
        return { type: 'text', text: part.refusal };
      case 'input_image':
        return {
          type: 'image_url',
          image_url: part.detail ? { url: part.image_url, detail: part.detail } : { url: part.image_url },
        };
    }
    return part;
  });
  // Plain strings are what every backend and chat template accepts; parts only when needed.
  if (converted.every((part) => part.type === 'text')) {
    return converted.map((part) => (part as { text: string }).text).join('\n');
  }
  return converted;
}

/** Translates a validated Responses request into the equivalent chat completions request. */
export function responsesToChat(request: ResponsesRequest): ChatCompletionRequest {
  const messages: ChatMessage[] = [];
  if (typeof request.instructions === 'string' && request.instructions.length > 0) {
    messages.push({ role: 'system', content: request.instructions });
  }
  if (typeof request.input === 'string') {
    messages.push({ role: 'user', content: request.input });
  } else {
    for (const item of request.input) {
      messages.push({ role: ROLE_MAP[item.role] ?? 'user', content: convertContent(item.content) });
    }
  }
  const chat: ChatCompletionRequest = { model: request.model, messages };
  if (typeof request.max_output_tokens === 'number') chat.max_tokens = request.max_output_tokens;
  if (typeof request.temperature === 'number') chat.temperature = request.temperature;
  if (typeof request.top_p === 'number') chat.top_p = request.top_p;
  if (typeof request.user === 'string') chat.user = request.user;
  const format = request.text?.format;
  if (format?.type === 'json_object') chat.response_format = { type: 'json_object' };
  else if (format?.type === 'json_schema') {
    chat.response_format = {
      type: 'json_schema',
      json_schema: {
        name: format.name,
        schema: format.schema,
        ...(format.description !== undefined ? { description: format.description } : {}),
        ...(format.strict !== undefined && format.strict !== null ? { strict: format.strict } : {}),
      },
    };
  }
  if (request.stream === true) {
    chat.stream = true;
    // Usage arrives in a last chunk only when asked for; response.completed reports it.
    chat.stream_options = { include_usage: true };
  }
  return chat;
}

// ---------------------------------------------------------------- response: chat → responses

type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : 0;
}

function usageFromChat(usage: unknown): ResponseUsage | null {
  if (!isObject(usage)) return null;
  const input = count(usage.prompt_tokens);
  const output = count(usage.completion_tokens);
  const cached = isObject(usage.prompt_tokens_details) ? count(usage.prompt_tokens_details.cached_tokens) : 0;
  const reasoning = isObject(usage.completion_tokens_details)
    ? count(usage.completion_tokens_details.reasoning_tokens)
    : 0;
  const total = typeof usage.total_tokens === 'number' ? count(usage.total_tokens) : input + output;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: cached },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: reasoning },
    total_tokens: total,
  };
}

function incompleteReason(finishReason: unknown): ResponseObject['incomplete_details'] {
  if (finishReason === 'length') return { reason: 'max_output_tokens' };
  if (finishReason === 'content_filter') return { reason: 'content_filter' };
  return null;
}

interface Envelope {
  id: string;
  createdAt: number;
}

function baseResponse(request: ResponsesRequest, env: Envelope): ResponseObject {
  const format = request.text?.format;
  return {
    id: env.id,
    object: 'response',
    created_at: env.createdAt,
    completed_at: null,
    status: 'in_progress',
    error: null,
    incomplete_details: null,
    instructions: typeof request.instructions === 'string' ? request.instructions : null,
    max_output_tokens: typeof request.max_output_tokens === 'number' ? request.max_output_tokens : null,
    model: request.model,
    output: [],
    parallel_tool_calls: false,
    previous_response_id: null,
    reasoning: null,
    store: false,
    temperature: typeof request.temperature === 'number' ? request.temperature : null,
    text: { format: format ? { ...format } : { type: 'text' } },
    tool_choice: 'auto',
    tools: [],
    top_p: typeof request.top_p === 'number' ? request.top_p : null,
    truncation: 'disabled',
    usage: null,
    user: typeof request.user === 'string' ? request.user : null,
    metadata: request.metadata ? { ...request.metadata } : {},
  };
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/**
 * Builds the `response` object from a successful (2xx) chat completion JSON body.
 * Throws UpstreamError when the body is not a chat completion.
 */
export function chatToResponse(
  chat: unknown,
  request: ResponsesRequest,
  ctx: TranslationContext = {},
): ResponseObject {
  const now = ctx.now ?? Date.now;
  const newId = ctx.newId ?? defaultId;
  if (!isObject(chat) || !Array.isArray(chat.choices)) {
    throw new UpstreamError('The host returned a malformed chat completion', 'bad_upstream_response');
  }
  const choice: unknown = chat.choices[0];
  const message = isObject(choice) ? choice.message : undefined;
  if (!isObject(choice) || !isObject(message)) {
    throw new UpstreamError('The host returned a chat completion without a message', 'bad_upstream_response');
  }
  const createdAt = typeof chat.created === 'number' ? Math.floor(chat.created) : seconds(now());
  const response = baseResponse(request, { id: newId('resp'), createdAt });
  const content: ResponseOutputMessage['content'] = [];
  if (typeof message.content === 'string') {
    content.push({ type: 'output_text', text: message.content, annotations: [] });
  } else if (typeof message.refusal === 'string') {
    content.push({ type: 'refusal', refusal: message.refusal });
  } else {
    content.push({ type: 'output_text', text: '', annotations: [] });
  }
  const incomplete = incompleteReason(choice.finish_reason);
  response.status = incomplete ? 'incomplete' : 'completed';
  response.incomplete_details = incomplete;
  response.completed_at = incomplete ? null : seconds(now());
  response.output = [
    {
      type: 'message',
      id: newId('msg'),
      status: incomplete ? 'incomplete' : 'completed',
      role: 'assistant',
      content,
    },
  ];
  response.usage = usageFromChat(chat.usage);
  return response;
}

// ---------------------------------------------------------------- streaming

function upstreamErrorFields(value: unknown): { code: string; message: string } {
  const err = isObject(value) ? value : {};
  const code =
    typeof err.code === 'string' ? err.code : typeof err.type === 'string' ? err.type : 'server_error';
  const message = typeof err.message === 'string' ? err.message : 'The host reported an error';
  return { code, message };
}

class StreamFailure extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Translates a chat completions SSE body (2xx) into the Responses event stream, one
 * `response.output_text.delta` per chat delta, emitted as soon as it arrives. A stream that
 * reports an error, is malformed, fails, or ends without `data: [DONE]` ends with `error` and
 * `response.failed` instead of `response.completed`. Never throws: every failure is an event.
 */
export async function* translateChatStreamToResponses(
  chatSse: AsyncIterable<Uint8Array>,
  request: ResponsesRequest,
  ctx: TranslationContext = {},
): AsyncGenerator<Uint8Array> {
  const now = ctx.now ?? Date.now;
  const newId = ctx.newId ?? defaultId;
  const response = baseResponse(request, { id: newId('resp'), createdAt: seconds(now()) });
  let sequence = 0;
  const emit = (type: string, fields: Obj): Uint8Array => {
    const data = JSON.stringify({ type, sequence_number: sequence++, ...fields });
    return formatSse({ event: type, data });
  };
  const snapshot = (): ResponseObject => structuredClone(response);

  yield emit('response.created', { response: snapshot() });
  yield emit('response.in_progress', { response: snapshot() });

  // The message item opens with the first text, so a stream that fails first has no item.
  let message: ResponseOutputMessage | undefined;
  let text = '';
  let finishReason: unknown = null;
  const openMessage = (): { item: ResponseOutputMessage; events: Uint8Array[] } => {
    const item: ResponseOutputMessage = {
      type: 'message',
      id: newId('msg'),
      status: 'in_progress',
      role: 'assistant',
      content: [],
    };
    const events = [
      emit('response.output_item.added', { output_index: 0, item: structuredClone(item) }),
      emit('response.content_part.added', {
        output_index: 0,
        item_id: item.id,
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [] },
      }),
    ];
    return { item, events };
  };

  let failure: StreamFailure | undefined;
  let sawDone = false;
  try {
    for await (const event of parseSse(chatSse)) {
      // After [DONE] the rest is read but ignored, so the transport still sees a clean end.
      if (sawDone) continue;
      if (event.data === '[DONE]') {
        sawDone = true;
        continue;
      }
      let chunk: unknown;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        throw new StreamFailure('server_error', 'The host sent a malformed stream event');
      }
      if (event.event === 'error' || (isObject(chunk) && chunk.error !== undefined && chunk.error !== null)) {
        const { code, message: msg } = upstreamErrorFields(isObject(chunk) ? (chunk.error ?? chunk) : chunk);
        throw new StreamFailure(code, msg);
      }
      if (!isObject(chunk)) throw new StreamFailure('server_error', 'The host sent a malformed stream event');
      if (chunk.usage !== undefined && chunk.usage !== null) response.usage = usageFromChat(chunk.usage);
      const choice: unknown = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
      if (!isObject(choice)) continue;
      const delta = choice.delta;
      if (isObject(delta) && typeof delta.content === 'string' && delta.content.length > 0) {
        if (!message) {
          const opened = openMessage();
          message = opened.item;
          yield* opened.events;
        }
        text += delta.content;
        yield emit('response.output_text.delta', {
          output_index: 0,
          item_id: message.id,
          content_index: 0,
          delta: delta.content,
          logprobs: [],
        });
      }
      if (choice.finish_reason !== undefined && choice.finish_reason !== null)
        finishReason = choice.finish_reason;
    }
    if (!sawDone) throw new StreamFailure('server_error', 'The host stream ended before completion');
  } catch (error) {
    // A transport failure after [DONE] cannot change an answer that is already complete.
    if (sawDone) failure = undefined;
    else if (error instanceof StreamFailure) failure = error;
    else if (error instanceof MeshError) failure = new StreamFailure(error.code, error.message);
    // Unknown errors may quote request content: report a generic failure.
    else failure = new StreamFailure('server_error', 'The host stream failed');
  }

  if (failure) {
    yield emit('error', { code: failure.code, message: failure.message, param: null });
    if (message) {
      message.status = 'incomplete';
      message.content = [{ type: 'output_text', text, annotations: [] }];
      response.output = [message];
    }
    response.status = 'failed';
    response.error = { code: failure.code, message: failure.message };
    yield emit('response.failed', { response: snapshot() });
    return;
  }

  let msg = message;
  if (!msg) {
    const opened = openMessage();
    msg = opened.item;
    yield* opened.events;
  }
  const incomplete = incompleteReason(finishReason);
  const part: ResponseOutputText = { type: 'output_text', text, annotations: [] };
  const itemFields = { output_index: 0, item_id: msg.id, content_index: 0 };
  yield emit('response.output_text.done', { ...itemFields, text, logprobs: [] });
  yield emit('response.content_part.done', { ...itemFields, part });
  msg.status = incomplete ? 'incomplete' : 'completed';
  msg.content = [part];
  yield emit('response.output_item.done', { output_index: 0, item: structuredClone(msg) });
  response.output = [msg];
  response.status = incomplete ? 'incomplete' : 'completed';
  response.incomplete_details = incomplete;
  response.completed_at = incomplete ? null : seconds(now());
  yield emit(incomplete ? 'response.incomplete' : 'response.completed', { response: snapshot() });
}

/** Headers for a translated Responses stream. */
export const RESPONSES_SSE_HEADERS: Record<string, string> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
};
