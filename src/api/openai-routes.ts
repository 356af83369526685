import { InvalidRequestError, MeshError, ModelNotFoundError, UpstreamError } from '../errors.ts';
import { bodyOf, jsonResponse, readAll, type UpstreamResponse } from '../http/exchange.ts';
import {
  isBackendPath,
  isStreaming,
  type OpenAiRequest,
  parseJsonBody,
  parseOpenAiRequest,
  routePath,
  validateChatCompletion,
  validateResponses,
} from '../openai/request.ts';
import type { IncomingApiRequest, RouteHandler } from './http-server.ts';
import { chatToResponse, responsesToChat, translateChatStreamToResponses } from './responses-translation.ts';

/** A model as /v1/models lists it. */
export interface ModelListing {
  id: string;
  /** Endpoint ids of remote hosts serving it ('local' when served here). */
  hosts: string[];
  contextLength?: number;
}

/**
 * What the OpenAI routes need from the node: the model list and a way to run a validated
 * request (the router, composed in by the node: api does not import routing).
 */
export interface InferenceDispatcher {
  listModels(): ModelListing[];
  dispatch(
    model: string,
    request: OpenAiRequest,
    options: { stream: boolean; signal: AbortSignal },
  ): Promise<UpstreamResponse>;
}

/** The OpenAI-compatible surface under /v1 (SPEC §3). */
export function createOpenAiRoutes(dispatcher: InferenceDispatcher): RouteHandler {
  return async (request: IncomingApiRequest): Promise<UpstreamResponse> => {
    const path = routePath(request.path);
    if (path === '/v1/models') {
      requireMethod(request, 'GET');
      return jsonResponse(200, modelList(dispatcher.listModels()));
    }
    if (path.startsWith('/v1/models/')) {
      requireMethod(request, 'GET');
      const id = decodePathSegment(path.slice('/v1/models/'.length));
      const entry = dispatcher.listModels().find((m) => m.id === id);
      if (!entry) throw new ModelNotFoundError(id);
      return jsonResponse(200, modelObject(entry));
    }
    if (isBackendPath(path)) {
      requireMethod(request, 'POST');
      const parsed = parseOpenAiRequest(request.method, path, await request.readBody());
      return dispatcher.dispatch(parsed.body.model, parsed, {
        stream: isStreaming(parsed),
        signal: request.signal,
      });
    }
    if (path === '/v1/responses') {
      requireMethod(request, 'POST');
      return serveResponses(dispatcher, request);
    }
    throw new MeshError('not_found', 'not_found', `No route for ${request.method} ${path}`);
  };
}

/** /v1/responses runs as a chat completion and is translated back, streamed or not. */
async function serveResponses(dispatcher: InferenceDispatcher, request: IncomingApiRequest) {
  const responsesRequest = validateResponses(parseJsonBody(await request.readBody()));
  // The translation is checked by the chat rules too: backends only ever see valid requests.
  const chat = validateChatCompletion(responsesToChat(responsesRequest));
  const upstream = await dispatcher.dispatch(
    chat.model,
    { path: '/v1/chat/completions', body: chat },
    {
      stream: chat.stream === true,
      signal: request.signal,
    },
  );
  const routeHeaders = Object.fromEntries(
    Object.entries(upstream.headers).filter(([name]) => name.startsWith('x-mesh-')),
  );
  if (upstream.status === 400) return renameChatParams(upstream, routeHeaders);
  if (upstream.status !== 200) return upstream; // already an OpenAI error body
  if (chat.stream) {
    return {
      status: 200,
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...routeHeaders },
      body: translateChatStreamToResponses(upstream.body, responsesRequest),
    };
  }
  let completion: unknown;
  try {
    completion = JSON.parse((await readAll(upstream.body)).toString('utf8'));
  } catch {
    throw new UpstreamError('The host returned a malformed chat completion');
  }
  return jsonResponse(200, chatToResponse(completion, responsesRequest), routeHeaders);
}

function requireMethod(request: IncomingApiRequest, method: string): void {
  if (request.method !== method) {
    throw new MeshError('method_not_allowed', 'method_not_allowed', `Use ${method} for ${request.path}`);
  }
}

function modelObject(entry: ModelListing) {
  return {
    id: entry.id,
    object: 'model',
    created: 0,
    owned_by: 'mesh-llm',
    meta: { hosts: entry.hosts, context_length: entry.contextLength ?? null },
  };
}

function modelList(models: ModelListing[]) {
  return { object: 'list', data: models.map(modelObject) };
}

/** A malformed percent-escape is the client's mistake (400), not a crash. */
function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InvalidRequestError('The path holds a malformed percent-escape', 'invalid_path');
  }
}

/** Chat field names a host's 400 may name, as the /v1/responses request spells them. */
const RESPONSES_NAMES: Array<[RegExp, string]> = [
  [/^tools\[(\d+)\]\.function\./, 'tools[$1].'],
  [/^response_format\.json_schema\.schema/, 'text.format.schema'],
  [/^response_format(\.json_schema)?/, 'text.format'],
  [/^max_tokens$/, 'max_output_tokens'],
  [/^tool_choice\.function\.name$/, 'tool_choice.name'],
];

/**
 * A host refused the translated chat request: name the field as the client sent it on
 * /v1/responses (an unknown body passes through unchanged; it is the host's own error).
 */
async function renameChatParams(upstream: UpstreamResponse, headers: Record<string, string>) {
  const bytes = await readAll(upstream.body);
  let body: { error?: { param?: unknown; message?: unknown } };
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { ...upstream, body: bodyOf(bytes) };
  }
  const error = body.error;
  if (error && typeof error.param === 'string') {
    const chatParam = error.param;
    const rule = RESPONSES_NAMES.find(([pattern]) => pattern.test(chatParam));
    if (rule) {
      const param = chatParam.replace(rule[0], rule[1]);
      error.param = param;
      if (typeof error.message === 'string') error.message = error.message.replaceAll(chatParam, param);
    }
  }
  return jsonResponse(400, body, headers);
}
