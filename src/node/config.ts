import { homedir } from 'node:os';
import { join } from 'node:path';
import type { GpuChoice, GpuLayersChoice } from '../backends/llama/gpu-choice.ts';
import type { LogFormat } from '../log.ts';
import { type AnswerBounds, DEFAULT_ANSWER_BOUNDS } from '../routing/answer-bounds.ts';
import { DEFAULT_INBOUND_LIMITS, type InboundLimits } from '../routing/inbound-limits.ts';

export type AttestationKeyChoice = 'auto' | 'tpm2' | 'secure-enclave' | 'software';

/** Everything a node is configured with; the CLI builds it from flags, tests build it directly. */
export interface NodeConfig {
  dataDir: string;
  name: string;
  /** OpenAI API (SPEC §3): loopback unless listenAll. */
  apiHost: string;
  apiPort: number;
  /** Ingress keys: when any is set, every /v1 request needs `Authorization: Bearer KEY`. */
  apiKeys: string[];
  /** Allow an API bound beyond loopback without keys (--insecure-no-auth). */
  insecureNoAuth: boolean;
  /** Console /api/* and web page; undefined disables it. Always loopback. */
  consolePort: number | undefined;
  meshHost: string;
  meshPort: number;
  join: string[];
  relay: boolean;
  /** Behave like a node behind NAT: reachable only through relays (demo, tests). */
  reachableOnlyViaRelay: boolean;
  client: boolean;
  /** One in-process model file (the demo's and tests' form); `models` adds more. */
  model?: { path: string; name?: string; contextSize?: number; threads?: number; parallel?: number };
  /** In-process models (`--model`, repeatable), each served under its own name. */
  models?: ModelConfig[];
  /** `--gpu`: default auto (node-llama-cpp's detection, CPU fallback). */
  gpu?: GpuChoice;
  /** `--gpu-layers`: default auto (what fits in free VRAM). */
  gpuLayers?: GpuLayersChoice;
  /** Replaces https://huggingface.co for `hf:` model sources (--model-mirror). */
  modelMirror?: string;
  /** RAM all in-process models together may use; default: what the OS reports available. */
  modelMemoryBytes?: number;
  /**
   * Pass-through backend. `model`/`models` name what it serves (--backend-model, repeatable);
   * neither: every model the upstream lists at /v1/models, re-read every `refreshMs`.
   */
  backend?: {
    url: string;
    model?: string;
    models?: string[];
    apiKey?: string;
    refreshMs?: number;
    /** Requests the upstream runs at once (`--slots`); default its /props, else 4. */
    slots?: number;
  };
  requireEncryption: boolean;
  requireAttestedHosts: boolean;
  attestationPolicyPath?: string;
  attestationKey: AttestationKeyChoice;
  /** False only to emulate a node from before E2E (no field 36, 0xE1 not understood). */
  e2e: boolean;
  heartbeatMs: number;
  /** Re-sign the attestation statement this often (SPEC §6.3: verifiers accept up to 660 s). */
  attestationRefreshMs: number;
  keyRotationMs: number;
  maxBodyBytes: number;
  /** What a remote host can make this node hold or wait for (--max-answer-mb, --first-byte-timeout, --idle-timeout). */
  answerBounds: AnswerBounds;
  /** What one member can make this host hold: streams per peer, request bytes, read deadlines. */
  inboundLimits: InboundLimits;
  mdns: boolean;
  /** Addresses others reach the mesh port on (--announce; multiaddr or host:port). */
  announce: string[];
  /** QUIC on the mesh port over UDP beside TCP (--no-quic turns it off). */
  quic: boolean;
  /** Ask the router for a port mapping over UPnP (--upnp). */
  upnp: boolean;
  logFormat: LogFormat;
  /** When every host of a model is full: how long a request may wait, and how many may. */
  queueTimeoutMs: number;
  maxQueued: number;
}

export interface ModelConfig {
  /** A GGUF file path, https:// URL, hf:OWNER/REPO/FILE.gguf or hf:OWNER/REPO:QUANT (+ #sha256=HEX). */
  source: string;
  /** The name clients use; default: the file name without `.gguf`. */
  name?: string;
  contextSize?: number;
  threads?: number;
  parallel?: number;
}

export const DEFAULT_API_PORT = 9337;
export const DEFAULT_CONSOLE_PORT = 3131;
export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

export function defaultDataDir(): string {
  return process.env.MESH_LLM_HOME ?? join(homedir(), '.mesh-llm');
}

export function defaultConfig(overrides: Partial<NodeConfig> = {}): NodeConfig {
  return {
    dataDir: defaultDataDir(),
    name: 'mesh-node',
    apiHost: '127.0.0.1',
    apiPort: DEFAULT_API_PORT,
    apiKeys: [],
    insecureNoAuth: false,
    consolePort: DEFAULT_CONSOLE_PORT,
    meshHost: '0.0.0.0',
    meshPort: 0,
    join: [],
    relay: false,
    reachableOnlyViaRelay: false,
    client: false,
    requireEncryption: false,
    requireAttestedHosts: false,
    attestationKey: 'auto',
    e2e: true,
    heartbeatMs: 60_000,
    attestationRefreshMs: 300_000,
    keyRotationMs: 24 * 60 * 60 * 1000,
    maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
    answerBounds: { ...DEFAULT_ANSWER_BOUNDS },
    inboundLimits: { ...DEFAULT_INBOUND_LIMITS },
    mdns: false,
    announce: [],
    quic: true,
    upnp: false,
    logFormat: 'pretty',
    queueTimeoutMs: 30_000,
    maxQueued: 256,
    ...overrides,
  };
}
