/**
 * What this node hosts: the in-process models (one llama.cpp backend each, on the GPU the
 * runtime found) and the pass-through backend, started in order. A model that cannot be
 * served (too big for memory, missing, not a GGUF) is refused with its reason while the
 * others keep serving; the node fails to start only when nothing it was asked to host runs.
 * Also the hardware facts a host announces (field 33, field 16) and /api/status shows.
 */
import { availableParallelism, cpus, freemem, totalmem } from 'node:os';
import { basename } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { GpuChoice } from '../backends/llama/gpu-choice.ts';
import type { GpuKind, LlamaRuntime } from '../backends/llama/runtime.ts';
import { OpenAiCompatibleBackend } from '../backends/openai-compatible.ts';
import type { InferenceBackend } from '../backends/types.ts';
import { ConfigError, describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { LocalAnnouncementFields } from '../mesh/types.ts';
import { HardwareInfoSchema, ServedModelRuntimeSchema } from '../proto/gen/mesh_pb.js';
import type { ModelConfig, NodeConfig } from './config.ts';

export interface HostedModelStatus {
  name: string;
  backend: InferenceBackend['kind'];
  ready: boolean;
  contextLength: number | null;
  /** In-process models: layers on the GPU out of the model's layers. */
  gpuLayers: number | null;
  layerCount: number | null;
}

export interface RefusedModel {
  name: string;
  reason: string;
}

export interface HostingStatus {
  /** The in-process runtime; null when this node loads no model in-process. */
  gpu: {
    requested: GpuChoice;
    kind: GpuKind;
    names: string[];
    vramBytes: number;
    /** Why `auto` runs on the CPU; null when it found a GPU or was not asked to. */
    fallbackReason: string | null;
  } | null;
  memoryBytes: number;
  cpuCores: number;
  models: HostedModelStatus[];
  refused: RefusedModel[];
}

export interface Hosting {
  readonly backends: InferenceBackend[];
  status(): HostingStatus;
  /** The announcement fields about hosting: models, their runtime, hardware, VRAM. */
  announcementFields(): Pick<
    LocalAnnouncementFields,
    'hostedModels' | 'hostedModelsKnown' | 'servedModelRuntime' | 'hardware' | 'vramBytes'
  >;
  /** Called when the served models change (a pass-through upstream's list did). */
  onChange(listener: () => void): void;
  stop(): Promise<void>;
}

/** The in-process models a config asks for, the single-file `model` form included. */
export function configuredModels(config: NodeConfig): ModelConfig[] {
  const single: ModelConfig[] = config.model
    ? [
        {
          source: config.model.path,
          name: config.model.name,
          contextSize: config.model.contextSize,
          threads: config.model.threads,
          parallel: config.model.parallel,
        },
      ]
    : [];
  return [...single, ...(config.models ?? [])];
}

/** The name a model is served under: given, or the file name without `.gguf`. */
export function modelNameOf(model: ModelConfig): string {
  return model.name ?? basename(model.source).replace(/\.gguf$/i, '');
}

/** Loads the llama.cpp runtime for `--gpu` and says which binary it is (for the measurement). */
export async function llamaBinaryKind(config: NodeConfig, logger: Logger): Promise<GpuKind> {
  const { llamaRuntime } = await import('../backends/llama/runtime.ts');
  return (await llamaRuntime(config.gpu ?? 'auto', logger)).kind;
}

export async function startHosting(config: NodeConfig, logger: Logger): Promise<Hosting> {
  const listeners: (() => void)[] = [];
  const changed = () => {
    for (const listener of listeners) listener();
  };
  const backends: InferenceBackend[] = [];
  const refused: RefusedModel[] = [];
  let firstError: unknown;
  const refuse = (name: string, error: unknown) => {
    firstError ??= error;
    const reason = error instanceof ConfigError ? error.message : describeError(error);
    refused.push({ name, reason });
    logger.error({ model: name, reason }, 'model refused; serving the others');
  };

  const models = configuredModels(config);

  let runtime: LlamaRuntime | undefined;
  let gpuNames: string[] = [];
  let vramBytes = 0;
  if (models.length > 0) {
    // Loaded on demand: llama.cpp's bindings cost memory a client or relay should not pay.
    const { llamaRuntime } = await import('../backends/llama/runtime.ts');
    const { LlamaCppBackend } = await import('../backends/llama-cpp.ts');
    const { resolveModelFile } = await import('../backends/models/store.ts');
    const { progressReporter } = await import('../backends/models/progress.ts');
    runtime = await llamaRuntime(config.gpu ?? 'auto', logger);
    if (runtime.kind !== 'cpu') {
      gpuNames = await runtime.llama.getGpuDeviceNames().catch(() => []);
      vramBytes = (await runtime.llama.getVramState().catch(() => ({ total: 0 }))).total;
    }
    logger.info({ gpu: runtime.kind, devices: gpuNames, vramBytes }, 'llama.cpp runtime ready');
    // Several models share the machine: each checks against what the earlier ones left.
    let committedRam = 0;
    const names = new Set<string>();
    const onProgress = progressReporter({ stream: process.stderr, logger });
    for (const model of models) {
      let path: string;
      try {
        path = await resolveModelFile(model.source, {
          dataDir: config.dataDir,
          mirror: config.modelMirror,
          logger,
          onProgress,
        });
      } catch (error) {
        refuse(model.name ?? model.source, error);
        continue;
      }
      const name = modelNameOf({ ...model, source: path });
      if (names.has(name)) {
        refuse(name, new ConfigError(`two models are named '${name}': give one --model NAME=SOURCE`));
        continue;
      }
      names.add(name);
      // Mapped weights stay "available" to the OS, so the earlier models' share is taken off
      // explicitly (counting their context twice errs on the side of refusing).
      const budget = Math.max(0, (config.modelMemoryBytes ?? freemem()) - committedRam);
      const backend = new LlamaCppBackend({
        modelPath: path,
        modelName: name,
        contextSize: model.contextSize,
        threads: model.threads,
        parallel: model.parallel,
        gpuLayers: config.gpuLayers,
        availableRamBytes: budget,
        runtime,
        logger: logger.child({ component: 'llama-cpp', model: name }),
      });
      logger.info({ kind: backend.kind, model: name }, 'starting backend');
      try {
        await backend.start();
        committedRam += backend.memoryEstimate()?.ramBytes ?? 0;
        backends.push(backend);
      } catch (error) {
        await backend.stop().catch(() => {});
        refuse(name, error);
      }
    }
  }

  if (config.backend) {
    const wanted = [
      ...(config.backend.model !== undefined ? [config.backend.model] : []),
      ...(config.backend.models ?? []),
    ];
    const backend = new OpenAiCompatibleBackend({
      baseUrl: config.backend.url,
      models: wanted,
      apiKey: config.backend.apiKey,
      refreshMs: config.backend.refreshMs,
      slots: config.backend.slots,
      onModelsChanged: changed,
      logger: logger.child({ component: 'backend' }),
    });
    logger.info({ kind: backend.kind }, 'starting backend');
    await backend.start();
    backends.push(backend);
  }

  if (backends.length === 0 && firstError !== undefined) throw firstError;

  const status = (): HostingStatus => ({
    gpu: runtime
      ? {
          requested: runtime.requested,
          kind: runtime.kind,
          names: gpuNames,
          vramBytes,
          fallbackReason: runtime.fallbackReason ?? null,
        }
      : null,
    memoryBytes: totalmem(),
    cpuCores: availableParallelism(),
    models: backends.flatMap((b) =>
      b.models().map((m) => ({
        name: m.name,
        backend: b.kind,
        ready: m.ready,
        contextLength: m.contextLength ?? null,
        gpuLayers: m.gpuLayers ?? null,
        layerCount: m.layerCount ?? null,
      })),
    ),
    refused: [...refused],
  });

  return {
    backends,
    status,
    announcementFields() {
      const hosted = backends.flatMap((b) => b.models().map((m) => ({ backend: b.kind, model: m })));
      return {
        hostedModels: hosted.map((h) => h.model.name),
        hostedModelsKnown: true,
        servedModelRuntime: hosted.map(({ backend, model }) =>
          create(ServedModelRuntimeSchema, {
            modelName: model.name,
            identityHash: model.identityHash ?? '',
            contextLength: model.contextLength ?? 0,
            ready: model.ready,
            gpuLayers: model.gpuLayers ?? 0,
            layerCount: model.layerCount ?? 0,
            backend,
          }),
        ),
        hardware:
          backends.length > 0
            ? create(HardwareInfoSchema, {
                chipName: (cpus()[0]?.model ?? '').trim().slice(0, 200),
                memoryBytes: BigInt(totalmem()),
                cpuCores: availableParallelism(),
                platform: `${process.platform}-${process.arch}`,
                gpuKind: runtime?.kind ?? '',
                gpuNames: gpuNames.map((n) => n.slice(0, 200)).slice(0, 16),
              })
            : undefined,
        vramBytes: BigInt(vramBytes),
      };
    },
    onChange(listener) {
      listeners.push(listener);
    },
    async stop() {
      await Promise.all(backends.map((b) => b.stop().catch(() => {})));
    },
  };
}
