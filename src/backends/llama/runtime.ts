/**
 * The node-llama-cpp runtime of this process: which native binary (CPU, CUDA, Vulkan, Metal)
 * is loaded, and where llama.cpp's log lines go. One per process and GPU choice: loading the
 * native binding is slow and its state is global anyway.
 */
import { getLlama, getLlamaGpuTypes, type Llama, LlamaLogLevel } from 'node-llama-cpp';
import { ConfigError, describeError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { GpuChoice } from './gpu-choice.ts';

/** What the loaded binary computes on. */
export type GpuKind = 'cuda' | 'vulkan' | 'metal' | 'cpu';

export interface LlamaRuntime {
  llama: Llama;
  requested: GpuChoice;
  kind: GpuKind;
  /** Why `auto` ended on the CPU; undefined when it did not. */
  fallbackReason?: string;
}

const logSinks = new Set<Logger>();
const runtimes = new Map<GpuChoice, Promise<LlamaRuntime>>();

/** llama.cpp's own log lines go to the first registered logger (backends register theirs). */
export function addLlamaLogSink(logger: Logger): void {
  logSinks.add(logger);
}

export function removeLlamaLogSink(logger: Logger): void {
  logSinks.delete(logger);
}

function forwardLlamaLog(level: LlamaLogLevel, message: string): void {
  const sink = logSinks.values().next().value;
  if (!sink) return;
  const text = message.trim();
  if (!text) return;
  if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) sink.error({ src: 'llama.cpp' }, text);
  else if (level === LlamaLogLevel.warn) sink.warn({ src: 'llama.cpp' }, text);
  else sink.debug({ src: 'llama.cpp' }, text);
}

function loadBinary(gpu: 'auto' | 'cuda' | 'vulkan' | 'metal' | false): Promise<Llama> {
  return getLlama({
    gpu,
    // Prebuilt binaries only: a node never compiles llama.cpp or downloads one at run time.
    build: 'never',
    usePrebuiltBinaries: true,
    skipDownload: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.warn,
    logger: forwardLlamaLog,
  });
}

function kindOf(llama: Llama): GpuKind {
  return llama.gpu === false ? 'cpu' : llama.gpu;
}

/**
 * The runtime for a GPU choice, created once per process. `auto` falls back to the CPU and says
 * why (logged once); an explicit kind that this machine cannot run is a ConfigError, since
 * silently running on the CPU would surprise whoever asked for the GPU.
 */
export function llamaRuntime(choice: GpuChoice = 'off', logger?: Logger): Promise<LlamaRuntime> {
  let runtime = runtimes.get(choice);
  if (!runtime) {
    runtime = createRuntime(choice, logger);
    runtimes.set(choice, runtime);
    runtime.catch(() => runtimes.delete(choice));
  }
  return runtime;
}

async function createRuntime(choice: GpuChoice, logger: Logger | undefined): Promise<LlamaRuntime> {
  if (choice === 'off') return { llama: await loadBinary(false), requested: choice, kind: 'cpu' };
  if (choice === 'auto') {
    let llama: Llama;
    let fallbackReason: string | undefined;
    try {
      llama = await loadBinary('auto');
      if (llama.gpu === false) fallbackReason = await noGpuReason();
    } catch (err) {
      fallbackReason = `loading a GPU binary failed (${describeError(err)})`;
      llama = await loadBinary(false);
    }
    if (fallbackReason) logger?.warn({ reason: fallbackReason }, 'no usable GPU: running models on the CPU');
    return { llama, requested: choice, kind: kindOf(llama), fallbackReason };
  }
  let llama: Llama;
  try {
    llama = await loadBinary(choice);
  } catch (err) {
    throw new ConfigError(
      `--gpu ${choice}: node-llama-cpp has no usable ${choice} binary on this machine (${describeError(err)}); use --gpu auto to fall back to the CPU`,
      { cause: err },
    );
  }
  if (llama.gpu !== choice) {
    throw new ConfigError(
      `--gpu ${choice}: this machine has no ${choice} support (node-llama-cpp loaded the ${kindOf(llama)} binary); use --gpu auto or --gpu off`,
    );
  }
  return { llama, requested: choice, kind: choice };
}

/** Why node-llama-cpp's detection picked the CPU, in words an operator can act on. */
async function noGpuReason(): Promise<string> {
  const supported = (await getLlamaGpuTypes('supported').catch(() => [])).filter((t) => t !== false);
  return supported.length === 0
    ? `node-llama-cpp detected no CUDA, Vulkan or Metal support on this ${process.platform}-${process.arch} machine`
    : `node-llama-cpp found no usable device for ${supported.join(', ')}`;
}
