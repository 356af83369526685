/**
 * What the in-process backend does with a validated OpenAI request: the sampling settings, the
 * prompt, and a 400 naming every parameter it cannot honour — a field is either acted on or
 * refused, never silently dropped.
 */
import { InvalidRequestError } from '../../errors.ts';
import { UnsupportedParameterError } from '../../openai/errors.ts';
import type { ChatCompletionRequest, CompletionRequest, EmbeddingsRequest } from '../../openai/schemas.ts';

export interface SamplingParams {
  /** Upper bound on generated tokens; undefined = until the context is full. */
  maxTokens?: number;
  temperature: number;
  topP: number;
  seed?: number;
  stop: string[];
  presencePenalty?: number;
  frequencyPenalty?: number;
  stream: boolean;
  includeUsage: boolean;
}

/** Fields with no effect on the answer (metadata), accepted as given. */
const INERT = ['model', 'user', 'metadata', 'store', 'service_tier'];

/** Chat and text completion fields this backend acts on. */
const SAMPLING = [
  'stream',
  'stream_options',
  'max_tokens',
  'temperature',
  'top_p',
  'n',
  'stop',
  'presence_penalty',
  'frequency_penalty',
  'seed',
];

const HONOURED = {
  chat: new Set([
    ...INERT,
    ...SAMPLING,
    'messages',
    'max_completion_tokens',
    'logprobs',
    'response_format',
    'tools',
    'tool_choice',
    'parallel_tool_calls',
  ]),
  completion: new Set([...INERT, ...SAMPLING, 'prompt', 'echo', 'logprobs']),
  embeddings: new Set([...INERT, 'input', 'encoding_format']),
};

/** A value that asks for nothing: absent, null, false, or an empty list/object. */
function isUnset(value: unknown): boolean {
  if (value === undefined || value === null || value === false) return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.keys(value as object).length === 0;
}

/** Refuses, by name, the first field present that this backend would otherwise ignore. */
export function refuseUnsupported(kind: keyof typeof HONOURED, body: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(body)) {
    if (!HONOURED[kind].has(key) && !isUnset(value)) {
      throw new UnsupportedParameterError(key, 'is not supported by this in-process llama.cpp host');
    }
  }
  if (kind === 'embeddings') return;
  const sampling = body as ChatCompletionRequest | CompletionRequest;
  if (sampling.n != null && sampling.n !== 1) {
    throw new UnsupportedParameterError('n', 'must be 1 on this host: it generates one choice per request');
  }
  if (!isUnset(sampling.logprobs)) {
    throw new UnsupportedParameterError('logprobs', 'is not supported by this in-process llama.cpp host');
  }
  if (kind === 'completion' && (body as CompletionRequest).echo === true) {
    throw new UnsupportedParameterError('echo', 'is not supported by this in-process llama.cpp host');
  }
}

/** Reads the generation fields common to chat and text completions. */
export function samplingOf(body: ChatCompletionRequest | CompletionRequest): SamplingParams {
  const maxTokens =
    ('max_completion_tokens' in body ? (body as ChatCompletionRequest).max_completion_tokens : undefined) ??
    body.max_tokens;
  const stop = (typeof body.stop === 'string' ? [body.stop] : (body.stop ?? [])).filter((s) => s.length > 0);
  return {
    maxTokens: maxTokens ?? undefined,
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    // llama.cpp takes an unsigned 32-bit seed.
    seed: body.seed == null ? undefined : body.seed >>> 0,
    stop,
    presencePenalty: body.presence_penalty || undefined,
    frequencyPenalty: body.frequency_penalty || undefined,
    stream: body.stream === true,
    includeUsage: body.stream_options?.include_usage === true,
  };
}

/** A completion prompt: text, or pre-tokenized ids. One prompt per request (one choice). */
export function promptOf(body: CompletionRequest): string | number[] {
  const prompt = body.prompt;
  if (typeof prompt === 'string') return prompt;
  if (prompt.every((p) => typeof p === 'number')) return prompt as number[];
  if (prompt.length === 1) return prompt[0] as string | number[];
  throw new UnsupportedParameterError(
    'prompt',
    'must be a single prompt on this host (one choice per request)',
  );
}

/** Embedding inputs: strings or token-id arrays, at most 2048 of them, none empty. */
export function embeddingInputsOf(body: EmbeddingsRequest): Array<string | number[]> {
  const input = body.input;
  const list: Array<string | number[]> =
    typeof input === 'string'
      ? [input]
      : input.every((t) => typeof t === 'number')
        ? [input as number[]]
        : (input as Array<string | number[]>);
  if (list.length > 2048)
    throw new InvalidRequestError("Invalid 'input': at most 2048 inputs", 'invalid_value', 'input');
  list.forEach((item, i) => {
    if (item.length === 0) {
      throw new InvalidRequestError(
        `Invalid 'input[${i}]': must not be empty`,
        'invalid_value',
        `input[${i}]`,
      );
    }
  });
  return list;
}
