/**
 * "Does this model fit?" before llama.cpp allocates anything: node-llama-cpp's own estimates of
 * the weights and the context (KV cache, compute buffers) against the memory this node may
 * still use. A model that does not fit is refused with the figures, not loaded into swap or
 * killed by the OOM killer halfway.
 */
import { freemem } from 'node:os';
import { GgufInsights, type Llama, readGgufFileInfo } from 'node-llama-cpp';
import { formatBytes } from '../../encoding/bytes.ts';
import { ConfigError } from '../../errors.ts';
import type { GpuLayersChoice } from './gpu-choice.ts';

export interface MemoryEstimate {
  /** Bytes of RAM (weights not offloaded, CPU side of the context). */
  ramBytes: number;
  /** Bytes of VRAM (offloaded layers, GPU side of the context). */
  vramBytes: number;
  totalLayers: number;
  /** Layers expected on the GPU (the estimate's assumption). */
  gpuLayers: number;
}

/** A model refused because it does not fit; the node keeps serving the others. */
export class ModelTooLargeError extends ConfigError {
  readonly estimate: MemoryEstimate;
  constructor(message: string, estimate: MemoryEstimate) {
    super(message);
    this.name = 'ModelTooLargeError';
    this.estimate = estimate;
  }
}

export interface FitInput {
  llama: Llama;
  modelPath: string;
  modelName: string;
  gpuLayers: GpuLayersChoice;
  contextSize: number | undefined;
  sequences: number;
  /** RAM this model may use; default: what the OS reports available now. */
  availableRamBytes?: number;
}

/** Reads the GGUF header (no weights) and estimates what loading it takes. */
export async function estimateModelMemory(input: FitInput): Promise<MemoryEstimate> {
  const info = await readGgufFileInfo(input.modelPath, { sourceType: 'filesystem' });
  const insights = await GgufInsights.from(info, input.llama);
  const totalLayers = insights.totalLayers;
  let gpuLayers = 0;
  if (input.llama.supportsGpuOffloading) {
    if (input.gpuLayers === 'max') gpuLayers = totalLayers;
    else if (input.gpuLayers === 'auto') {
      // node-llama-cpp fits 'auto' into free VRAM itself: count the model on the GPU when all
      // of it fits there, else on the CPU, so RAM alone must hold it if the GPU is full.
      const all = insights.estimateModelResourceRequirements({ gpuLayers: totalLayers, useMmap: false });
      const vram = await input.llama.getVramState();
      gpuLayers = all.gpuVram <= vram.free ? totalLayers : 0;
    } else gpuLayers = Math.min(input.gpuLayers, totalLayers);
  }
  // Weights counted fully: mmap only defers the reads, and a model larger than RAM thrashes.
  const weights = insights.estimateModelResourceRequirements({ gpuLayers, useMmap: false });
  const contextSize = input.contextSize ?? Math.min(4096, insights.trainContextSize ?? 4096);
  const context = insights.estimateContextResourceRequirements({
    contextSize,
    modelGpuLayers: gpuLayers,
    sequences: input.sequences,
  });
  return {
    ramBytes: weights.cpuRam + context.cpuRam,
    vramBytes: weights.gpuVram + context.gpuVram,
    totalLayers,
    gpuLayers,
  };
}

/** Throws ModelTooLargeError when the estimate exceeds the RAM or free VRAM left. */
export async function checkModelFits(input: FitInput): Promise<MemoryEstimate> {
  const estimate = await estimateModelMemory(input);
  const ram = input.availableRamBytes ?? freemem();
  if (estimate.ramBytes > ram) {
    throw new ModelTooLargeError(
      `The model '${input.modelName}' needs about ${formatBytes(estimate.ramBytes)} of RAM but ${formatBytes(ram)} is available; it was not loaded`,
      estimate,
    );
  }
  // With 'auto', node-llama-cpp offloads what fits; a fixed count or 'max' must fit as asked.
  if (estimate.vramBytes > 0 && input.gpuLayers !== 'auto') {
    const vram = await input.llama.getVramState();
    if (estimate.vramBytes > vram.free) {
      throw new ModelTooLargeError(
        `The model '${input.modelName}' needs about ${formatBytes(estimate.vramBytes)} of GPU memory for ${estimate.gpuLayers} layers but ${formatBytes(vram.free)} is free; use --gpu-layers auto or fewer layers`,
        estimate,
      );
    }
  }
  return estimate;
}
