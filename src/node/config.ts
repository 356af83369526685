import { homedir } from 'node:os';
import { join } from 'node:path';
import type { LogFormat } from '../log.ts';
import { type AnswerBounds, DEFAULT_ANSWER_BOUNDS } from '../routing/answer-bounds.ts';

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
  model?: { path: string; name?: string; contextSize?: number; threads?: number; parallel?: number };
  backend?: { url: string; model: string; apiKey?: string };
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
  mdns: boolean;
  logFormat: LogFormat;
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
    mdns: false,
    logFormat: 'pretty',
    ...overrides,
  };
}
