/**
 * In-process inference with node-llama-cpp: the prompt plaintext never leaves this (hardened)
 * process. One context with `parallel` sequences serves concurrent requests; more wait in a
 * bounded queue. Chat prompts go through the model's own chat template (from the GGUF).
 */
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import {
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaGrammar,
  LlamaGrammarEvaluationState,
  type LlamaModel,
  resolveChatWrapper,
  type Token,
} from 'node-llama-cpp';
import { InvalidRequestError, MeshError, NoCapacityError } from '../errors.ts';
import { jsonResponse, type UpstreamResponse } from '../http/exchange.ts';
import type { Logger } from '../log.ts';
import { errorResponse, sseErrorEvent } from '../openai/errors.ts';
import type { OpenAiRequest } from '../openai/request.ts';
import type {
  ChatCompletionRequest,
  ChatMessage,
  CompletionRequest,
  EmbeddingsRequest,
} from '../openai/schemas.ts';
import { SSE_DONE, sseEvent, sseResponse } from '../openai/sse.ts';
import { ChatAnswer, type GenerationResult } from './llama/chat-answer.ts';
import { chatHistoryOf } from './llama/chat-history.ts';
import { runFunctionCalling } from './llama/function-calling.ts';
import type { GpuLayersChoice } from './llama/gpu-choice.ts';
import { grammarFor, grammarStops } from './llama/grammar.ts';
import { type LoadedLlamaModel, loadLlamaModel } from './llama/load.ts';
import type { MemoryEstimate } from './llama/memory.ts';
import { type OutputPlan, outputPlanOf } from './llama/output-plan.ts';
import {
  embeddingInputsOf,
  promptOf,
  refuseUnsupported,
  type SamplingParams,
  samplingOf,
} from './llama/params.ts';
import { type LlamaRuntime, llamaRuntime } from './llama/runtime.ts';
import { TokenSteps } from './llama/token-steps.ts';
import { PushStream } from './push-stream.ts';
import { SlotPool } from './slot-pool.ts';
import { TokenTextStream } from './text-stream.ts';
import type { InferenceBackend, ModelInfo } from './types.ts';

export interface LlamaCppBackendOptions {
  modelPath: string;
  /** The name clients use; default: the file name without `.gguf`. */
  modelName?: string;
  /** Tokens per sequence; default: what fits, up to the training context and at most 4096. */
  contextSize?: number;
  /** CPU threads per evaluation; set it (tests use 1): the library default is slow on 2 cores. */
  threads?: number;
  /** Concurrent generations (context sequences). Default 4. */
  parallel?: number;
  /** Requests allowed to wait for a free sequence; beyond that: 503 no_capacity. Default parallel × 8. */
  maxQueue?: number;
  /** Layers to offload when the runtime has a GPU. Default 'auto' (what fits). */
  gpuLayers?: GpuLayersChoice;
  /** RAM this model may use (the memory check); default: what the OS reports available. */
  availableRamBytes?: number;
  logger: Logger;
  /** The node-llama-cpp runtime (GPU choice); default: the process's CPU-only one. */
  runtime?: LlamaRuntime;
  /** Clock for `created` timestamps (ms). */
  now?: () => number;
}

interface Prepared {
  tokens: Token[];
  stopTokens: Set<Token>;
  stopStrings: string[];
  /** Constrains the output (JSON, forced tool calls). */
  grammar?: LlamaGrammar;
  /** The chat history the tokens render (function calling generates from it). */
  history?: ChatHistoryItem[];
}

type Route = 'chat' | 'completion';

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

export class LlamaCppBackend implements InferenceBackend {
  readonly kind = 'llama-cpp' as const;
  readonly plaintextBoundary = 'in-process' as const;
  readonly modelName: string;

  readonly #options: LlamaCppBackendOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #parallel: number;
  #loaded: LoadedLlamaModel | undefined;
  #model: LlamaModel | undefined;
  #context: LlamaContext | undefined;
  #chatWrapper: ChatWrapper | undefined;
  #pool: SlotPool<LlamaContextSequence> | undefined;
  #embedding: Promise<LlamaEmbeddingContext> | undefined;
  #embeddingLock: Promise<unknown> = Promise.resolve();
  #identityHash: string | undefined;
  #ready = false;
  #starting: Promise<void> | undefined;
  /** Aborts every running generation on stop(). */
  #shutdown = new AbortController();
  readonly #active = new Set<Promise<unknown>>();
  /** One decode batch per token for all generations; output written while llama.cpp decodes. */
  readonly #steps = new TokenSteps();

  constructor(options: LlamaCppBackendOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.#now = options.now ?? Date.now;
    this.modelName = options.modelName ?? basename(options.modelPath).replace(/\.gguf$/i, '');
    this.#parallel = Math.max(1, Math.floor(options.parallel ?? 4));
  }

  models(): ModelInfo[] {
    return [
      {
        name: this.modelName,
        contextLength:
          this.#context?.contextSize ?? this.#model?.trainContextSize ?? this.#options.contextSize,
        identityHash: this.#identityHash,
        ready: this.#ready,
        slots: this.#parallel,
        gpuLayers: this.#loaded?.gpuLayers,
        layerCount: this.#loaded?.totalLayers,
      },
    ];
  }

  /** What the memory check estimated for this model; undefined until loaded. */
  memoryEstimate(): MemoryEstimate | undefined {
    return this.#loaded?.estimate;
  }

  start(): Promise<void> {
    this.#starting ??= this.#start().catch((err: unknown) => {
      this.#starting = undefined;
      throw err;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    const started = this.#now();
    const loaded = await loadLlamaModel({
      runtime: this.#options.runtime ?? (await llamaRuntime('off')),
      modelPath: this.#options.modelPath,
      modelName: this.modelName,
      contextSize: this.#options.contextSize,
      threads: this.#options.threads,
      parallel: this.#parallel,
      gpuLayers: this.#options.gpuLayers,
      availableRamBytes: this.#options.availableRamBytes,
      dispatchSchedule: this.#steps.dispatchSchedule,
      logger: this.#log,
    });
    this.#loaded = loaded;
    this.#identityHash = loaded.identityHash;
    this.#model = loaded.model;
    this.#context = loaded.context;
    this.#chatWrapper = resolveChatWrapper(loaded.model);
    this.#pool = new SlotPool(loaded.sequences, this.#options.maxQueue ?? this.#parallel * 8);
    this.#shutdown = new AbortController();
    this.#ready = true;
    this.#log.info(
      {
        model: this.modelName,
        contextSize: loaded.context.contextSize,
        parallel: this.#parallel,
        gpuLayers: `${loaded.gpuLayers}/${loaded.totalLayers}`,
        chatWrapper: this.#chatWrapper.wrapperName,
        ms: this.#now() - started,
      },
      'llama.cpp model loaded',
    );
  }

  async stop(): Promise<void> {
    const starting = this.#starting;
    if (!starting) return;
    await starting.catch(() => {});
    this.#ready = false;
    this.#starting = undefined;
    this.#pool?.close();
    this.#shutdown.abort(stoppedError());
    while (this.#active.size > 0) await Promise.allSettled([...this.#active]);
    const embedding = this.#embedding;
    this.#embedding = undefined;
    if (embedding) await embedding.then((e) => e.dispose()).catch(() => {});
    await this.#loaded?.dispose();
    this.#loaded = undefined;
    this.#context = undefined;
    this.#model = undefined;
    this.#pool = undefined;
  }

  async healthy(): Promise<boolean> {
    return this.#ready && this.#model !== undefined && !this.#model.disposed && !this.#context?.disposed;
  }

  async handle(request: OpenAiRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    if (!this.#ready) {
      return errorResponse(
        new NoCapacityError(`The model '${this.modelName}' is not loaded`, 'model_not_ready'),
      );
    }
    try {
      switch (request.path) {
        case '/v1/embeddings':
          refuseUnsupported('embeddings', request.body);
          return await this.#embeddings(request.body, signal);
        case '/v1/chat/completions':
          refuseUnsupported('chat', request.body);
          return await this.#generate('chat', request.body, signal);
        case '/v1/completions':
          refuseUnsupported('completion', request.body);
          return await this.#generate('completion', request.body, signal);
      }
    } catch (err) {
      if (signal.aborted) throw abortError(signal);
      if (!(err instanceof MeshError)) {
        this.#log.error({ err: err instanceof Error ? err.name : 'unknown' }, 'llama.cpp request failed');
      }
      return errorResponse(err);
    }
  }

  #requireLoaded(): { model: LlamaModel; context: LlamaContext; pool: SlotPool<LlamaContextSequence> } {
    const model = this.#model;
    const context = this.#context;
    const pool = this.#pool;
    if (!model || !context || !pool || !this.#ready) {
      throw new NoCapacityError(`The model '${this.modelName}' is not loaded`, 'model_not_ready');
    }
    return { model, context, pool };
  }

  async #prepareChat(model: LlamaModel, messages: ChatMessage[], plan: OutputPlan): Promise<Prepared> {
    const history = chatHistoryOf(messages);
    // Tools are documented to the model by its chat wrapper, in the template's own words.
    const state = this.#chatWrapper!.generateContextState({
      chatHistory: history,
      availableFunctions: plan.functions,
      documentFunctionParams: true,
    });
    const tokens = state.contextText.tokenize(model.tokenizer);
    const stopTokens = new Set<Token>();
    const stopStrings: string[] = [];
    for (const trigger of state.stopGenerationTriggers) {
      const triggerTokens = trigger.tokenize(model.tokenizer);
      if (triggerTokens.length === 1) stopTokens.add(triggerTokens[0]!);
      else if (triggerTokens.length > 1) stopStrings.push(model.detokenize(triggerTokens, true));
    }
    return { tokens, stopTokens, stopStrings, history, grammar: await grammarFor(model, plan) };
  }

  #prepareCompletion(model: LlamaModel, prompt: string | number[]): Prepared {
    if (typeof prompt !== 'string')
      return { tokens: checkTokenIds(model, prompt), stopTokens: new Set(), stopStrings: [] };
    const tokens = model.tokenize(prompt, false);
    const bos = model.tokens.bos;
    if (bos !== null && model.tokens.shouldPrependBosToken && tokens[0] !== bos) tokens.unshift(bos);
    return { tokens, stopTokens: new Set(), stopStrings: [] };
  }

  async #generate(
    route: Route,
    body: ChatCompletionRequest | CompletionRequest,
    signal: AbortSignal,
  ): Promise<UpstreamResponse> {
    const { model, context, pool } = this.#requireLoaded();
    const params = samplingOf(body);
    const plan = route === 'chat' ? outputPlanOf(body as ChatCompletionRequest) : undefined;
    const prepared = plan
      ? await this.#prepareChat(model, (body as ChatCompletionRequest).messages, plan)
      : this.#prepareCompletion(model, promptOf(body as CompletionRequest));
    const answer = plan ? new ChatAnswer(plan) : undefined;
    const contextSize = context.contextSize;
    const promptTokens = prepared.tokens.length;
    if (promptTokens === 0) throw new MeshError('invalid_request', 'invalid_prompt', 'The prompt is empty');
    if (promptTokens >= contextSize) {
      throw new MeshError(
        'invalid_request',
        'context_length_exceeded',
        `This model's maximum context length is ${contextSize} tokens, but the prompt has ${promptTokens} tokens`,
      );
    }

    const sequence = await pool.acquire(signal);
    const id = `${route === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replaceAll('-', '')}`;
    const created = Math.floor(this.#now() / 1000);
    const maxTokens = Math.min(params.maxTokens ?? Number.POSITIVE_INFINITY, contextSize - promptTokens);
    const stops = [...prepared.stopStrings, ...params.stop];

    const stop = new AbortController();
    const combined = AbortSignal.any([signal, stop.signal, this.#shutdown.signal]);
    const run = (onText: (text: string) => void) =>
      this.#track(
        (plan?.kind === 'auto-tools'
          ? runFunctionCalling({
              sequence,
              chatWrapper: this.#chatWrapper!,
              history: prepared.history!,
              functions: plan.functions,
              parallel: plan.parallel,
              params,
              maxTokens,
              onText,
              signal: combined,
            })
          : this.#runSequence(model, sequence, prepared, params, stops, maxTokens, onText, combined)
        ).finally(() => pool.release(sequence)),
      );

    if (!params.stream) {
      let text = '';
      const result = await run((piece) => {
        text += piece;
      });
      if (signal.aborted) throw abortError(signal);
      if (this.#shutdown.signal.aborted) throw stoppedError();
      const usage = usageOf(promptTokens, result.completionTokens);
      const choice = answer
        ? answer.choice(text, result)
        : { index: 0, text, logprobs: null, finish_reason: result.finishReason };
      return jsonResponse(200, {
        id,
        object: route === 'chat' ? 'chat.completion' : 'text_completion',
        created,
        model: this.modelName,
        choices: [choice],
        usage,
      });
    }

    const out = new PushStream<Uint8Array>(() => stop.abort());
    // The caller gave up: end the body now (as the pass-through backend does, with the abort
    // reason) rather than after whatever was generated but not yet read.
    const onAbort = () => out.cancel(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    const usageField = params.includeUsage ? { usage: null } : {};
    const chunk = (choice: object) =>
      sseEvent({
        id,
        object: route === 'chat' ? 'chat.completion.chunk' : 'text_completion',
        created,
        model: this.modelName,
        choices: [choice],
        ...usageField,
      });
    for (const choice of answer?.streamStart() ?? []) out.push(chunk(choice));
    const onText = (text: string) => {
      if (!answer) out.push(chunk({ index: 0, text, logprobs: null, finish_reason: null }));
      else for (const choice of answer.streamPiece(text)) out.push(chunk(choice));
    };
    run(onText)
      .finally(() => signal.removeEventListener('abort', onAbort))
      .then(
        (result) => {
          if (combined.aborted) {
            // Cut short by stop(): tell a reader that is still there why the stream ends early.
            if (this.#shutdown.signal.aborted && !stop.signal.aborted && !signal.aborted) {
              out.push(sseErrorEvent(stoppedError()));
            }
            out.end();
            return;
          }
          if (!answer) {
            out.push(chunk({ index: 0, text: '', logprobs: null, finish_reason: result.finishReason }));
          } else for (const choice of answer.streamEnd(result)) out.push(chunk(choice));
          if (params.includeUsage) {
            out.push(
              sseEvent({
                id,
                object: route === 'chat' ? 'chat.completion.chunk' : 'text_completion',
                created,
                model: this.modelName,
                choices: [],
                usage: usageOf(promptTokens, result.completionTokens),
              }),
            );
          }
          out.push(SSE_DONE);
          out.end();
        },
        (err: unknown) => {
          if (!combined.aborted) {
            this.#log.error({ err: err instanceof Error ? err.name : 'unknown' }, 'llama.cpp stream failed');
            out.push(sseErrorEvent(err));
          }
          out.end();
        },
      );
    return sseResponse(out);
  }

  #track<T>(work: Promise<T>): Promise<T> {
    this.#active.add(work);
    const done = () => this.#active.delete(work);
    work.then(done, done);
    return work;
  }

  /** Evaluates the prompt on `sequence` and samples until a stop, max tokens, or abort. */
  async #runSequence(
    model: LlamaModel,
    sequence: LlamaContextSequence,
    prepared: Prepared,
    params: SamplingParams,
    stops: string[],
    maxTokens: number,
    onText: (text: string) => void,
    signal: AbortSignal,
  ): Promise<GenerationResult> {
    const input = await reuseCachedPrefix(sequence, prepared.tokens);
    const grammar = prepared.grammar;
    const text = new TokenTextStream(
      (tokens, last) => model.detokenize(tokens as Token[], false, last as Token[]),
      grammar ? [...stops, ...grammarStops(grammar)] : stops,
    );
    let completionTokens = 0;
    let finishReason: 'stop' | 'length' = 'stop';
    if (signal.aborted) return { completionTokens, finishReason };
    const generated: Token[] = [];
    const penalised = params.presencePenalty !== undefined || params.frequencyPenalty !== undefined;
    const tokens = sequence.evaluate(input, {
      temperature: params.temperature,
      topP: params.topP,
      seed: params.seed,
      grammarEvaluationState: grammar ? new LlamaGrammarEvaluationState({ model, grammar }) : undefined,
      repeatPenalty: penalised
        ? {
            punishTokens: () => generated,
            penalty: 1,
            presencePenalty: params.presencePenalty,
            frequencyPenalty: params.frequencyPenalty,
          }
        : undefined,
    });
    // The generator ends by itself on an end-of-generation token.
    let joined = false;
    try {
      for await (const token of tokens) {
        if (signal.aborted) break;
        completionTokens++;
        if (prepared.stopTokens.has(token)) break;
        if (penalised) generated.push(token);
        const piece = text.push(token);
        if (piece) this.#steps.deliver(() => onText(piece));
        if (text.stopped) break;
        if (completionTokens >= maxTokens) {
          finishReason = 'length';
          break;
        }
        // From its first token on (the prompt is decoded), the generation steps with the others.
        if (!joined) {
          joined = true;
          this.#steps.join();
        }
        await this.#steps.arrive();
      }
    } finally {
      if (joined) this.#steps.leave();
      this.#steps.flush();
    }
    if (!signal.aborted) {
      const rest = text.flush();
      if (rest) onText(rest);
    }
    return { completionTokens, finishReason };
  }

  async #embeddings(body: EmbeddingsRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    const { model } = this.#requireLoaded();
    const inputs = embeddingInputsOf(body);
    const format = body.encoding_format ?? 'float';
    const context = await this.#embeddingContext(model);
    const limit = this.#context?.contextSize ?? model.trainContextSize;
    const tokenized = inputs.map((input) =>
      typeof input === 'string' ? model.tokenize(input, false) : checkTokenIds(model, input),
    );
    const promptTokens = tokenized.reduce((sum, t) => sum + t.length, 0);
    for (const t of tokenized) {
      if (t.length >= limit) {
        throw new MeshError(
          'invalid_request',
          'context_length_exceeded',
          `This model's maximum context length is ${limit} tokens, but an input has ${t.length} tokens`,
        );
      }
    }
    // The embedding context evaluates one input at a time; requests take turns.
    const data = await this.#withEmbeddingLock(async () => {
      const list: Array<{ object: 'embedding'; index: number; embedding: number[] | string }> = [];
      for (const [index, tokens] of tokenized.entries()) {
        if (signal.aborted || this.#shutdown.signal.aborted) throw abortError(signal);
        const { vector } = await context.getEmbeddingFor(tokens);
        list.push({
          object: 'embedding',
          index,
          embedding:
            format === 'base64'
              ? Buffer.from(Float32Array.from(vector).buffer).toString('base64')
              : [...vector],
        });
      }
      return list;
    });
    return jsonResponse(200, {
      object: 'list',
      data,
      model: this.modelName,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  }

  #embeddingContext(model: LlamaModel): Promise<LlamaEmbeddingContext> {
    // llama.cpp embeds with decoder-only and encoder-only models, not encoder-decoder ones (T5…).
    if (model.fileInsights.hasEncoder && model.fileInsights.hasDecoder) {
      throw new InvalidRequestError(
        `The model '${this.modelName}' cannot compute embeddings (it is an encoder-decoder model)`,
        'embeddings_unsupported',
        'model',
      );
    }
    this.#embedding ??= model
      .createEmbeddingContext({
        contextSize: this.#context?.contextSize ?? this.#options.contextSize,
        threads: this.#options.threads,
      })
      .catch((err: unknown) => {
        this.#embedding = undefined;
        throw err;
      });
    return this.#embedding;
  }

  #withEmbeddingLock<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#embeddingLock.then(work, work);
    this.#embeddingLock = run.catch(() => {});
    return this.#track(run);
  }
}

/** Token ids from a client must exist in the vocabulary: llama.cpp does not check them. */
function checkTokenIds(model: LlamaModel, ids: number[]): Token[] {
  const size = vocabularySize(model);
  if (ids.some((id) => id >= size)) {
    throw new MeshError(
      'invalid_request',
      'invalid_prompt',
      `Token ids must be below the vocabulary size ${size}`,
    );
  }
  return ids as Token[];
}

function vocabularySize(model: LlamaModel): number {
  const tokens = (model.fileInfo.metadata as unknown as { tokenizer?: { ggml?: { tokens?: unknown[] } } })
    .tokenizer?.ggml?.tokens;
  // Without the vocabulary list, accept nothing rather than risk an out-of-range read.
  return Array.isArray(tokens) ? tokens.length : 0;
}

function stoppedError(): NoCapacityError {
  return new NoCapacityError('The backend is shutting down', 'backend_stopped');
}

function usageOf(promptTokens: number, completionTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

/**
 * Keeps the sequence's cached tokens that match the new prompt's start (multi-turn chats resend
 * the history), erases the rest, and returns the tokens still to evaluate (at least one, since
 * sampling needs fresh logits).
 */
async function reuseCachedPrefix(sequence: LlamaContextSequence, tokens: Token[]): Promise<Token[]> {
  const cached = sequence.contextTokens;
  let keep = 0;
  const limit = Math.min(cached.length, tokens.length - 1);
  while (keep < limit && cached[keep] === tokens[keep]) keep++;
  try {
    if (keep === 0) await sequence.clearHistory();
    else if (keep < sequence.nextTokenIndex) {
      await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);
    }
  } catch {
    await sequence.clearHistory();
    return tokens;
  }
  return tokens.slice(keep);
}
