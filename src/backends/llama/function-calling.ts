/**
 * `tool_choice: "auto"` on the in-process backend: node-llama-cpp's LlamaChat generates with the
 * functions documented through the model's chat wrapper, detects the wrapper's own call syntax in
 * the output, and constrains each call's parameters to its schema with a grammar. Text the model
 * writes outside calls streams as content.
 */
import {
  type ChatHistoryItem,
  type ChatModelFunctions,
  type ChatWrapper,
  LlamaChat,
  type LlamaContextSequence,
} from 'node-llama-cpp';
import type { GenerationResult } from './chat-answer.ts';
import { MAX_PARALLEL_CALLS } from './output-plan.ts';
import type { SamplingParams } from './params.ts';

export interface FunctionCallingRun {
  sequence: LlamaContextSequence;
  chatWrapper: ChatWrapper;
  history: ChatHistoryItem[];
  functions: ChatModelFunctions;
  parallel: boolean;
  params: SamplingParams;
  maxTokens: number;
  onText(text: string): void;
  signal: AbortSignal;
}

export async function runFunctionCalling(run: FunctionCallingRun): Promise<GenerationResult> {
  const { params } = run;
  const chat = new LlamaChat({
    contextSequence: run.sequence,
    chatWrapper: run.chatWrapper,
    autoDisposeSequence: false,
  });
  let completionTokens = 0;
  const penalised = params.presencePenalty !== undefined || params.frequencyPenalty !== undefined;
  try {
    const response = await chat.generateResponse(run.history, {
      functions: run.functions,
      documentFunctionParams: true,
      maxParallelFunctionCalls: run.parallel ? MAX_PARALLEL_CALLS : 1,
      maxTokens: Number.isFinite(run.maxTokens) ? run.maxTokens : undefined,
      temperature: params.temperature,
      topP: params.topP,
      seed: params.seed,
      customStopTriggers: params.stop.length > 0 ? params.stop : undefined,
      repeatPenalty: penalised
        ? {
            penalty: 1,
            presencePenalty: params.presencePenalty,
            frequencyPenalty: params.frequencyPenalty,
          }
        : false,
      signal: run.signal,
      stopOnAbortSignal: true,
      onTextChunk: (text) => {
        if (text) run.onText(text);
      },
      onToken: (tokens) => {
        completionTokens += tokens.length;
      },
    });
    const calls = (response.functionCalls ?? []).map((call) => ({
      name: call.functionName,
      arguments: JSON.stringify(call.params ?? {}),
    }));
    return {
      completionTokens,
      finishReason: response.metadata.stopReason === 'maxTokens' ? 'length' : 'stop',
      calls,
    };
  } finally {
    chat.dispose({ disposeSequence: false });
  }
}
