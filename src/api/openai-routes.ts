import { InvalidRequestError, MeshError, ModelNotFoundError, UpstreamError } from '../errors.ts';
import { type ApiRequest, jsonResponse, readAll, type UpstreamResponse } from '../http/exchange.ts';
import type { ModelListing, RoutedResponse } from '../routing/router.ts';
import type { IncomingApiRequest, RouteHandler } from './http-server.ts';
import {
  parseJsonBody,
  validateChatCompletion,
  validateCompletion,
  validateEmbeddings,
  validateResponses,
} from './openai-validation.ts';
import { chatToResponse, responsesToChat, translateChatStreamToResponses } from './responses-translation.ts';

/** What the OpenAI routes need from the node: the model list and a way to run a request. */
export interface InferenceDispatcher {
  listModels(): ModelListing[];
  dispatch(
    model: string,
    request: ApiRequest,
    options: { stream: boolean; signal: AbortSignal },
  ): Promise<RoutedResponse>;
}

const PASS_THROUGH: Record<string, (body: unknown) => { model: string; stream?: boolean }> = {
  '/v1/chat/completions': validateChatCompletion,
  '/v1/completions': validateCompletion,
  '/v1/embeddings': validateEmbeddings,
};

/** The OpenAI-compatible surface under /v1 (SPEC §3). */
export function createOpenAiRoutes(dispatcher: InferenceDispatcher): RouteHandler {
  return async (request: IncomingApiRequest): Promise<UpstreamResponse> => {
    const path = request.path.split('?')[0]!.replace(/\/+$/, '');
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
    const validate = PASS_THROUGH[path];
    if (validate) {
      requireMethod(request, 'POST');
      const bytes = await request.readBody();
      const body = validate(parseJsonBody(bytes));
      return dispatcher.dispatch(body.model, jsonPost(path, bytes), {
        stream: body.stream === true,
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
  const chat = responsesToChat(responsesRequest);
  const chatBytes = Buffer.from(JSON.stringify(chat));
  const upstream = await dispatcher.dispatch(chat.model, jsonPost('/v1/chat/completions', chatBytes), {
    stream: chat.stream === true,
    signal: request.signal,
  });
  const routeHeaders = Object.fromEntries(
    Object.entries(upstream.headers).filter(([name]) => name.startsWith('x-mesh-')),
  );
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

/** The request a host sees: method, path and body only; the client's headers stay here. */
function jsonPost(path: string, body: Uint8Array): ApiRequest {
  return { method: 'POST', path, headers: { 'content-type': 'application/json' }, body };
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
