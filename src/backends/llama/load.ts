/**
 * Loads one GGUF model for serving: checks that it fits, loads the weights (offloading layers
 * to the GPU when the runtime has one), creates one context with a sequence per parallel slot,
 * and hashes the file for the model's identity. The generation side lives in ../llama-cpp.ts.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { LlamaContext, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { GpuLayersChoice } from './gpu-choice.ts';
import { checkModelFits, type MemoryEstimate } from './memory.ts';
import { addLlamaLogSink, type LlamaRuntime, removeLlamaLogSink } from './runtime.ts';

export interface LoadModelOptions {
  runtime: LlamaRuntime;
  modelPath: string;
  modelName: string;
  /** Tokens per sequence; default: what fits, up to the training context and at most 4096. */
  contextSize?: number;
  threads?: number;
  /** Context sequences (concurrent generations). */
  parallel: number;
  /** Default 'auto': node-llama-cpp offloads what fits in free VRAM. */
  gpuLayers?: GpuLayersChoice;
  /** RAM this model may use; default: what the OS reports available. */
  availableRamBytes?: number;
  /** When to decode what the sequences queued (see token-steps.ts); default node-llama-cpp's. */
  dispatchSchedule?: (dispatch: () => void) => void;
  logger: Logger;
}

export interface LoadedLlamaModel {
  model: LlamaModel;
  context: LlamaContext;
  sequences: LlamaContextSequence[];
  /** SHA-256 of the GGUF file. */
  identityHash: string;
  /** Layers actually offloaded to the GPU, and the model's total. */
  gpuLayers: number;
  totalLayers: number;
  estimate: MemoryEstimate;
  /** Frees the context and the weights. */
  dispose(): Promise<void>;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function loadLlamaModel(options: LoadModelOptions): Promise<LoadedLlamaModel> {
  const { runtime, modelPath: path, logger } = options;
  const file = await stat(path).catch(() => undefined);
  if (!file?.isFile()) throw new ConfigError(`The model file ${path} does not exist or is not a file`);
  const gpuLayers = runtime.kind === 'cpu' ? 0 : (options.gpuLayers ?? 'auto');
  const estimate = await checkModelFits({
    llama: runtime.llama,
    modelPath: path,
    modelName: options.modelName,
    gpuLayers,
    contextSize: options.contextSize,
    sequences: options.parallel,
    availableRamBytes: options.availableRamBytes,
  }).catch((err: unknown) => {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`The model file ${path} is not a readable GGUF model`, { cause: err });
  });
  addLlamaLogSink(logger);
  const hashing = sha256File(path);
  hashing.catch(() => {}); // awaited below; avoid an unhandled rejection if loading fails first
  let model: LlamaModel;
  try {
    model = await runtime.llama.loadModel({ modelPath: path, gpuLayers }).catch((err: unknown) => {
      throw new ConfigError(`The model file ${path} could not be loaded as a GGUF model`, { cause: err });
    });
  } catch (err) {
    removeLlamaLogSink(logger);
    throw err;
  }
  try {
    const context = await model.createContext({
      contextSize: options.contextSize ?? { max: Math.min(4096, model.trainContextSize) },
      sequences: options.parallel,
      threads: options.threads,
      failedCreationRemedy: options.contextSize === undefined ? undefined : false,
      batching: options.dispatchSchedule ? { dispatchSchedule: options.dispatchSchedule } : undefined,
    });
    const sequences: LlamaContextSequence[] = [];
    for (let i = 0; i < options.parallel; i++) sequences.push(context.getSequence());
    const identityHash = await hashing;
    return {
      model,
      context,
      sequences,
      identityHash,
      gpuLayers: model.gpuLayers,
      totalLayers: model.fileInsights.totalLayers,
      estimate,
      async dispose() {
        await context.dispose().catch(() => {});
        await model.dispose().catch(() => {});
        removeLlamaLogSink(logger);
      },
    };
  } catch (err) {
    removeLlamaLogSink(logger);
    await model.dispose().catch(() => {});
    throw err;
  }
}
