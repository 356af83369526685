import { resolve } from 'node:path';
import { GPU_CHOICES, type GpuLayersChoice } from '../../backends/llama/gpu-choice.ts';
import { isRemoteSource } from '../../backends/models/source.ts';
import { ConfigError } from '../../errors.ts';
import { createLogger, type LogFormat } from '../../log.ts';
import {
  DEFAULT_API_PORT,
  DEFAULT_CONSOLE_PORT,
  defaultConfig,
  type ModelConfig,
  type NodeConfig,
} from '../../node/config.ts';
import { configuredModels, llamaBinaryKind } from '../../node/hosting.ts';
import { startMeshNode } from '../../node/mesh-node.ts';
import { currentPosture } from '../../node/posture.ts';
import { apiKeysFromFlags } from '../api-keys.ts';
import { choiceFlag, parseFlags, portFlag, positiveIntFlag, rejectPositionals } from '../args.ts';
import type { CliContext } from '../context.ts';
import { joinTokensFromFlags } from '../join-tokens.ts';

const HELP = `mesh-llm serve [flags]

  --model [NAME=]SOURCE      host a GGUF model in-process (node-llama-cpp); repeatable, each
                             served as NAME (default: the file name without .gguf). SOURCE: a
                             path, https://…/file.gguf, hf:OWNER/REPO/FILE.gguf or
                             hf:OWNER/REPO:QUANT, optionally #sha256=HEX; downloaded once into
                             <data-dir>/models/
  --model-mirror URL         fetch hf: models from this mirror (or $MESH_LLM_MODEL_MIRROR)
  --model-name NAME          the name for a single --model
  --gpu KIND                 auto | cuda | vulkan | metal | off (default auto: detect, else CPU)
  --gpu-layers N|auto|max    layers to offload to the GPU (default auto: what fits)
  --model-memory SIZE        RAM all models may use, e.g. 12G (default: what is available)
  --backend URL              pass through to an OpenAI-compatible server (llama-server, Ollama, vLLM)
  --backend-model NAME       serve only this model of --backend (repeatable; default: every
                             model it lists at /v1/models, re-read every 30 s)
                             (an API key for the backend is read from MESH_LLM_BACKEND_API_KEY)
  --client                   no backend: use the mesh's models
  --join TOKEN               join a mesh (repeatable; visible to local users in the process list)
  --join-file FILE           read invite tokens from FILE, one a line (- = standard input)
  --name NAME                a name shown to peers
  --port N                   OpenAI API port (default ${DEFAULT_API_PORT}, loopback)
  --listen-all               bind the API to 0.0.0.0 instead of 127.0.0.1 (needs --api-key)
  --api-key KEY              require 'Authorization: Bearer KEY' on /v1 (repeatable)
  --api-keys-file FILE       the same, one key a line (# comments)
  --insecure-no-auth         allow --listen-all without API keys
  --max-answer-mb N          largest non-streamed answer taken from a host (default 32)
  --first-byte-timeout S     seconds a host may take to its first answer byte, then the next
                             host is tried (default 300)
  --idle-timeout S           seconds a streamed answer may stall (default 120)
  --console N                console port (default ${DEFAULT_CONSOLE_PORT}, loopback); 0 = any free port
  --no-console               do not serve the console
  --bind-port N              mesh port, TCP and UDP (default: the one this data dir used last
                             time, else any free port)
  --bind-host IP             mesh listen address, IPv4 or IPv6 (default 0.0.0.0: every v4 and v6
                             interface; 127.0.0.1 keeps a mesh on this machine)
  --announce ADDR            an address others reach the mesh port on (host:port or a multiaddr;
                             repeatable): a VPS behind 1:1 NAT, a port forward, a DNS name
  --no-quic                  no QUIC (UDP) beside TCP: no hole punching, relayed behind NAT
  --upnp                     ask the router for a port mapping (UPnP)
  --data-dir DIR             identity, pins and keys (default ~/.mesh-llm or $MESH_LLM_HOME)
  --relay                    act as a circuit relay for the mesh
  --mdns                     discover peers on the LAN; a fresh node (no --join, no mesh yet)
                             joins the LAN's mesh without a token: this trusts everyone on
                             the LAN
  --require-encryption       never send a prompt in plaintext; refuse plaintext requests as a host
  --require-attested-hosts   send inference only to attested, live hosts (fails closed)
  --attestation-policy FILE  minimum tier, required posture, allowed hashes, pinned keys (JSON)
  --attestation-key KIND     auto | tpm2 | secure-enclave | software (default auto)
  --threads N                llama.cpp threads          --ctx-size N   context size
  --slots N                  requests the backend runs at once (llama.cpp sequences, default 4;
                             --backend: its /props total_slots, else 4); advertised to the mesh
  --queue-wait S             when every host is full, wait up to S seconds (default 30), then 429
  --log-format pretty|json   log output (default pretty)
  --allow-unsafe-env         do not re-execute when started with LD_PRELOAD/NODE_OPTIONS (posture says so)`;

const FLAGS = {
  model: { type: 'string', multiple: true },
  'model-name': { type: 'string' },
  gpu: { type: 'string' },
  'gpu-layers': { type: 'string' },
  'model-memory': { type: 'string' },
  'model-mirror': { type: 'string' },
  backend: { type: 'string' },
  'backend-model': { type: 'string', multiple: true },
  client: { type: 'boolean' },
  join: { type: 'string', multiple: true },
  'join-file': { type: 'string', multiple: true },
  name: { type: 'string' },
  port: { type: 'string' },
  'listen-all': { type: 'boolean' },
  'api-key': { type: 'string', multiple: true },
  'api-keys-file': { type: 'string' },
  'insecure-no-auth': { type: 'boolean' },
  'max-answer-mb': { type: 'string' },
  'first-byte-timeout': { type: 'string' },
  'idle-timeout': { type: 'string' },
  console: { type: 'string' },
  'no-console': { type: 'boolean' },
  'bind-port': { type: 'string' },
  'bind-host': { type: 'string' },
  announce: { type: 'string', multiple: true },
  'no-quic': { type: 'boolean' },
  upnp: { type: 'boolean' },
  'data-dir': { type: 'string' },
  relay: { type: 'boolean' },
  mdns: { type: 'boolean' },
  'require-encryption': { type: 'boolean' },
  'require-attested-hosts': { type: 'boolean' },
  'attestation-policy': { type: 'string' },
  'attestation-key': { type: 'string' },
  threads: { type: 'string' },
  'ctx-size': { type: 'string' },
  slots: { type: 'string' },
  'queue-wait': { type: 'string' },
  'log-format': { type: 'string' },
  'allow-unsafe-env': { type: 'boolean' },
  // For tests, the demo and benchmarks: emulate a NAT'd node, a pre-E2E node, a fast heartbeat,
  // fast attestation statement refreshes.
  'reachable-only-via-relay': { type: 'boolean' },
  'no-e2e': { type: 'boolean' },
  'heartbeat-ms': { type: 'string' },
  'attestation-refresh-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export function serveConfigFromArgs(args: string[]): NodeConfig | undefined {
  const { values, positionals } = parseFlags(args, FLAGS);
  if (values.help) return undefined;
  rejectPositionals(positionals);
  if (values['backend-model'] && !values.backend)
    throw new ConfigError('--backend-model needs --backend URL');
  if (values.backend) {
    try {
      new URL(values.backend);
    } catch {
      throw new ConfigError(
        `--backend must be a URL such as http://127.0.0.1:11434, got '${values.backend}'`,
      );
    }
  }
  const threads = positiveIntFlag(values.threads, '--threads');
  const contextSize = positiveIntFlag(values['ctx-size'], '--ctx-size');
  const slots = positiveIntFlag(values.slots, '--slots');
  const queueWait = positiveIntFlag(values['queue-wait'], '--queue-wait');
  const base = defaultConfig();
  return defaultConfig({
    dataDir: values['data-dir'] ? resolve(values['data-dir']) : base.dataDir,
    name: values.name ?? base.name,
    apiHost: values['listen-all'] ? '0.0.0.0' : '127.0.0.1',
    apiPort: portFlag(values.port, '--port', DEFAULT_API_PORT),
    apiKeys: apiKeysFromFlags(values['api-key'], values['api-keys-file']),
    insecureNoAuth: values['insecure-no-auth'] ?? false,
    answerBounds: {
      maxAnswerBytes: scaled(
        values['max-answer-mb'],
        '--max-answer-mb',
        1024 * 1024,
        base.answerBounds.maxAnswerBytes,
      ),
      firstByteTimeoutMs: scaled(
        values['first-byte-timeout'],
        '--first-byte-timeout',
        1000,
        base.answerBounds.firstByteTimeoutMs,
      ),
      idleTimeoutMs: scaled(values['idle-timeout'], '--idle-timeout', 1000, base.answerBounds.idleTimeoutMs),
    },
    consolePort: values['no-console']
      ? undefined
      : portFlag(values.console, '--console', DEFAULT_CONSOLE_PORT),
    meshPort: portFlag(values['bind-port'], '--bind-port', 0),
    meshHost: values['bind-host'] ?? base.meshHost,
    join: joinTokensFromFlags(values.join, values['join-file']),
    relay: values.relay ?? false,
    reachableOnlyViaRelay: values['reachable-only-via-relay'] ?? false,
    client: values.client ?? false,
    models: modelFlags(values.model ?? [], values['model-name']).map((m) => ({
      ...m,
      threads,
      contextSize,
      parallel: slots,
    })),
    gpu: choiceFlag(values.gpu, '--gpu', GPU_CHOICES, 'auto'),
    gpuLayers: gpuLayersFlag(values['gpu-layers']),
    modelMemoryBytes: sizeFlag(values['model-memory'], '--model-memory'),
    modelMirror: values['model-mirror'] ?? (process.env.MESH_LLM_MODEL_MIRROR || undefined),
    backend: values.backend
      ? {
          url: values.backend,
          models: values['backend-model'] ?? [],
          apiKey: process.env.MESH_LLM_BACKEND_API_KEY,
          slots,
        }
      : undefined,
    requireEncryption: values['require-encryption'] ?? false,
    requireAttestedHosts: values['require-attested-hosts'] ?? false,
    attestationPolicyPath: values['attestation-policy'] ? resolve(values['attestation-policy']) : undefined,
    attestationKey: choiceFlag(
      values['attestation-key'],
      '--attestation-key',
      ['auto', 'tpm2', 'secure-enclave', 'software'] as const,
      'auto',
    ),
    queueTimeoutMs: queueWait === undefined ? base.queueTimeoutMs : queueWait * 1000,
    e2e: !values['no-e2e'],
    heartbeatMs: positiveIntFlag(values['heartbeat-ms'], '--heartbeat-ms') ?? base.heartbeatMs,
    attestationRefreshMs:
      positiveIntFlag(values['attestation-refresh-ms'], '--attestation-refresh-ms') ??
      base.attestationRefreshMs,
    mdns: values.mdns ?? false,
    announce: values.announce ?? [],
    quic: !(values['no-quic'] ?? false),
    upnp: values.upnp ?? false,
    logFormat: choiceFlag<LogFormat>(values['log-format'], '--log-format', ['pretty', 'json'], 'pretty'),
  });
}

/** `--model [NAME=]SOURCE`: a name before `=` only when it cannot be part of a path or URL. */
export function modelFlags(flags: string[], singleName: string | undefined): ModelConfig[] {
  if (singleName !== undefined && flags.length !== 1) {
    throw new ConfigError('--model-name names a single --model; with several use --model NAME=SOURCE');
  }
  return flags.map((flag) => {
    const eq = flag.indexOf('=');
    const prefix = eq > 0 ? flag.slice(0, eq) : '';
    const named = /^[\w.:-]{1,128}$/.test(prefix) && !/^[a-z][a-z0-9+.-]*:\/\//i.test(flag);
    const source = named ? flag.slice(eq + 1) : flag;
    if (!source) throw new ConfigError(`--model ${flag}: the model source is empty`);
    return { source: isRemoteSource(source) ? source : resolve(source), name: named ? prefix : singleName };
  });
}

function gpuLayersFlag(value: string | undefined): GpuLayersChoice | undefined {
  if (value === undefined || value === 'auto' || value === 'max') return value;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new ConfigError(`--gpu-layers must be a whole number, auto or max; got '${value}'`);
  }
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** A byte count such as 8G, 512M or 1073741824 (binary units). */
export function sizeFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(value.trim());
  const bytes = match ? Number(match[1]) * SIZE_UNITS[match[2]!.toLowerCase()]! : Number.NaN;
  if (!Number.isFinite(bytes) || bytes <= 0) {
    throw new ConfigError(`${flag} must be a size such as 8G or 512M, got '${value}'`);
  }
  return Math.floor(bytes);
}

function scaled(value: string | undefined, flag: string, unit: number, fallback: number): number {
  const n = positiveIntFlag(value, flag);
  return n === undefined ? fallback : n * unit;
}

export async function runServe(args: string[], context: CliContext): Promise<number> {
  const config = serveConfigFromArgs(args);
  if (!config) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const logger = createLogger({ format: config.logFormat });
  // The GPU binary is chosen before the posture, so the measurement covers the one loaded.
  const llamaGpu = configuredModels(config).length > 0 ? await llamaBinaryKind(config, logger) : 'cpu';
  const posture = await currentPosture(context.hardening, logger, llamaGpu);
  const node = await startMeshNode(config, { logger, posture });
  process.stdout.write(`OpenAI API: ${node.apiUrl}/v1   console: ${node.consoleUrl ?? 'off'}\n`);
  await waitForShutdownSignal();
  logger.info('leaving the mesh');
  await node.stop();
  return 0;
}

export function waitForShutdownSignal(): Promise<void> {
  return new Promise((resolveSignal) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolveSignal();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}
