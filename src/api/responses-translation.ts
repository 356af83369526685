/**
 * The OpenAI Responses API (`POST /v1/responses`) on top of chat completions: the request
 * becomes a chat request, and the chat answer (JSON or SSE) becomes a `response` object or
 * the Responses event stream. Backends only ever see chat completions.
 */
import { randomBytes } from 'node:crypto';
import type { ResponseFunctionToolCall } from 'openai/resources/responses/responses';
import { MeshError, UpstreamError } from '../errors.ts';
import type {
  ChatCompletionRequest,
  ChatMessage,
  ResponsesItem,
  ResponsesRequest,
} from '../openai/schemas.ts';
import { formatSse, parseSse } from '../openai/sse.ts';

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
/** A function call the model made, as the Responses API reports it. */
export type ResponseFunctionCall = ResponseFunctionToolCall & {
  id: string;
  status: 'in_progress' | 'completed' | 'incomplete';
};
export type ResponseOutputItem = ResponseOutputMessage | ResponseFunctionCall;

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
  output: ResponseOutputItem[];
  parallel_tool_calls: boolean;
  previous_response_id: null;
  reasoning: null;
  store: false;
  temperature: number | null;
  text: { format: { type: string; [key: string]: unknown } };
  tool_choice: NonNullable<ResponsesRequest['tool_choice']>;
  tools: NonNullable<ResponsesRequest['tools']>;
  top_p: number | null;
  truncation: 'disabled';
  usage: ResponseUsage | null;
  user: string | null;
  metadata: Record<string, string>;
}

// ---------------------------------------------------------------- request: responses → chat

type ChatRole = 'user' | 'assistant' | 'system';
type Part = Extract<ResponsesItem, { type: 'message' }>['content'];

const ROLE_MAP: Record<string, ChatRole> = {
  user: 'user',
  assistant: 'assistant',
  system: 'system',
  // Local chat templates rarely know "developer"; it has system semantics.
  developer: 'system',
};

type ChatPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string; detail?: string } };

function convertContent(parts: Part): string | ChatPart[] {
  if (typeof parts === 'string') return parts;
  const converted = parts.map((part): ChatPart => {
    switch (part.type) {
      case 'input_text':
      case 'output_text':
        return { type: 'text', text: part.text };
      case 'refusal':
        return { type: 'text', text: part.refusal };
      default:
        return {
          type: 'image_url',
          image_url: part.detail ? { url: part.image_url, detail: part.detail } : { url: part.image_url },
        };
    }
  });
  // Plain strings are what every backend and chat template accepts; parts only when needed.
  if (converted.every((part) => part.type === 'text')) {
    return converted.map((part) => (part as { text: string }).text).join('\n');
  }
  return converted;
}

function textOf(parts: Part): string {
  const content = convertContent(parts);
  return typeof content === 'string'
    ? content
    : content.map((p) => (p.type === 'text' ? p.text : '')).join('\n');
}

/** Input items → chat messages: function calls join the assistant turn they follow; outputs are tool messages. */
function messagesOf(items: ResponsesItem[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  for (const item of items) {
    if (item.type === 'message') {
      messages.push({
        role: ROLE_MAP[item.role] ?? 'user',
        content: convertContent(item.content),
      } as ChatMessage);
    } else if (item.type === 'function_call') {
      const call = {
        id: item.call_id,
        type: 'function' as const,
        function: { name: item.name, arguments: item.arguments },
      };
      const last = messages.at(-1);
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), call];
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else {
      messages.push({ role: 'tool', tool_call_id: item.call_id, content: textOf(item.output) });
    }
  }
  return messages;
}

/** Translates a validated Responses request into the equivalent chat completions request. */
export function responsesToChat(request: ResponsesRequest): ChatCompletionRequest {
  const messages: ChatMessage[] = [];
  if (typeof request.instructions === 'string' && request.instructions.length > 0) {
    messages.push({ role: 'system', content: request.instructions });
  }
  if (typeof request.input === 'string') messages.push({ role: 'user', content: request.input });
  else messages.push(...messagesOf(request.input));
  const chat: ChatCompletionRequest = { model: request.model, messages };
  if (typeof request.max_output_tokens === 'number') chat.max_tokens = request.max_output_tokens;
  if (typeof request.temperature === 'number') chat.temperature = request.temperature;
  if (typeof request.top_p === 'number') chat.top_p = request.top_p;
  if (typeof request.user === 'string') chat.user = request.user;
  if (request.tools && request.tools.length > 0) {
    chat.tools = request.tools.map((tool) => ({
      type: 'function',
      function: {
        name: tool.name,
        ...(tool.description != null ? { description: tool.description } : {}),
        ...(tool.parameters != null ? { parameters: tool.parameters } : {}),
        ...(tool.strict != null ? { strict: tool.strict } : {}),
      },
    }));
  }
  const choice = request.tool_choice;
  if (choice !== undefined) {
    chat.tool_choice =
      typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } };
  }
  if (typeof request.parallel_tool_calls === 'boolean')
    chat.parallel_tool_calls = request.parallel_tool_calls;
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
    parallel_tool_calls: request.parallel_tool_calls ?? true,
    previous_response_id: null,
    reasoning: null,
    store: false,
    temperature: typeof request.temperature === 'number' ? request.temperature : null,
    text: { format: format ? { ...format } : { type: 'text' } },
    tool_choice: request.tool_choice ?? 'auto',
    tools: request.tools ?? [],
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
  const incomplete = incompleteReason(choice.finish_reason);
  const status: 'incomplete' | 'completed' = incomplete ? 'incomplete' : 'completed';
  const calls = functionCallsOf(message.tool_calls, newId, status);
  const content: ResponseOutputMessage['content'] = [];
  if (typeof message.content === 'string' && (message.content.length > 0 || calls.length === 0)) {
    content.push({ type: 'output_text', text: message.content, annotations: [] });
  } else if (typeof message.refusal === 'string') {
    content.push({ type: 'refusal', refusal: message.refusal });
  } else if (calls.length === 0) {
    content.push({ type: 'output_text', text: '', annotations: [] });
  }
  response.status = status;
  response.incomplete_details = incomplete;
  response.completed_at = incomplete ? null : seconds(now());
  response.output = [
    ...(content.length > 0
      ? [{ type: 'message' as const, id: newId('msg'), status, role: 'assistant' as const, content }]
      : []),
    ...calls,
  ];
  response.usage = usageFromChat(chat.usage);
  return response;
}

/** A chat answer's tool_calls as Responses function_call items. */
function functionCallsOf(
  toolCalls: unknown,
  newId: (prefix: string) => string,
  status: ResponseFunctionCall['status'],
): ResponseFunctionCall[] {
  if (!Array.isArray(toolCalls)) return [];
  return toolCalls.flatMap((call): ResponseFunctionCall[] => {
    const fn = isObject(call) && isObject(call.function) ? call.function : undefined;
    if (!isObject(call) || !fn || typeof fn.name !== 'string') return [];
    return [
      {
        type: 'function_call',
        id: newId('fc'),
        call_id: typeof call.id === 'string' ? call.id : newId('call'),
        name: fn.name,
        arguments: typeof fn.arguments === 'string' ? fn.arguments : '',
        status,
      },
    ];
  });
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

  // Output items open as their first delta arrives and close when the next one opens (or at the
  // end), in order, as OpenAI streams them; a stream that fails first has no item.
  type Open =
    | { kind: 'message'; index: number; item: ResponseOutputMessage; text: string }
    | { kind: 'call'; index: number; chatIndex: unknown; item: ResponseFunctionCall };
  let current: Open | undefined;
  let opened = 0;
  let finishReason: unknown = null;

  const openMessage = (): Uint8Array[] => {
    const item: ResponseOutputMessage = {
      type: 'message',
      id: newId('msg'),
      status: 'in_progress',
      role: 'assistant',
      content: [],
    };
    current = { kind: 'message', index: opened++, item, text: '' };
    return [
      emit('response.output_item.added', { output_index: current.index, item: structuredClone(item) }),
      emit('response.content_part.added', {
        output_index: current.index,
        item_id: item.id,
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [] },
      }),
    ];
  };
  const openCall = (chatIndex: unknown, id: unknown, name: unknown): Uint8Array[] => {
    const item: ResponseFunctionCall = {
      type: 'function_call',
      id: newId('fc'),
      call_id: typeof id === 'string' ? id : newId('call'),
      name: typeof name === 'string' ? name : '',
      arguments: '',
      status: 'in_progress',
    };
    current = { kind: 'call', index: opened++, chatIndex, item };
    return [emit('response.output_item.added', { output_index: current.index, item: structuredClone(item) })];
  };
  /** Ends the open item with `status`; failed streams close it without the .done events of its parts. */
  const close = (status: 'completed' | 'incomplete', events: boolean): Uint8Array[] => {
    const open = current;
    current = undefined;
    if (!open) return [];
    const out: Uint8Array[] = [];
    const fields = { output_index: open.index, item_id: open.item.id };
    if (open.kind === 'message') {
      const part: ResponseOutputText = { type: 'output_text', text: open.text, annotations: [] };
      if (events) {
        out.push(
          emit('response.output_text.done', { ...fields, content_index: 0, text: open.text, logprobs: [] }),
        );
        out.push(emit('response.content_part.done', { ...fields, content_index: 0, part }));
      }
      open.item.content = [part];
    } else if (events) {
      out.push(
        emit('response.function_call_arguments.done', {
          ...fields,
          name: open.item.name,
          arguments: open.item.arguments,
        }),
      );
    }
    open.item.status = status;
    response.output.push(open.item);
    if (events)
      out.push(
        emit('response.output_item.done', { output_index: open.index, item: structuredClone(open.item) }),
      );
    return out;
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
        if (current?.kind !== 'message') {
          yield* close('completed', true);
          yield* openMessage();
        }
        const open = current as Extract<Open, { kind: 'message' }>;
        open.text += delta.content;
        yield emit('response.output_text.delta', {
          output_index: open.index,
          item_id: open.item.id,
          content_index: 0,
          delta: delta.content,
          logprobs: [],
        });
      }
      for (const call of isObject(delta) && Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
        if (!isObject(call)) continue;
        const fn = isObject(call.function) ? call.function : {};
        if (current?.kind !== 'call' || current.chatIndex !== call.index) {
          yield* close('completed', true);
          yield* openCall(call.index, call.id, fn.name);
        }
        const open = current as unknown as Extract<Open, { kind: 'call' }>;
        if (typeof fn.arguments === 'string' && fn.arguments.length > 0) {
          open.item.arguments += fn.arguments;
          yield emit('response.function_call_arguments.delta', {
            output_index: open.index,
            item_id: open.item.id,
            delta: fn.arguments,
          });
        }
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
    close('incomplete', false);
    response.status = 'failed';
    response.error = { code: failure.code, message: failure.message };
    yield emit('response.failed', { response: snapshot() });
    return;
  }

  const incomplete = incompleteReason(finishReason);
  if (opened === 0) yield* openMessage();
  yield* close(incomplete ? 'incomplete' : 'completed', true);
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
