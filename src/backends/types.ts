import type { UpstreamResponse } from '../http/exchange.ts';
import type { OpenAiRequest } from '../openai/request.ts';

export interface ModelInfo {
  /** The name clients put in `model`. */
  name: string;
  contextLength?: number;
  /** Stable identity of the weights (e.g. SHA-256 of the GGUF header+size), when known. */
  identityHash?: string;
  ready: boolean;
  /** Requests it runs at once (llama.cpp sequences, the upstream server's parallel slots). */
  slots?: number;
  /** In-process models: layers offloaded to the GPU, and the model's layer count. */
  gpuLayers?: number;
  layerCount?: number;
}

/** Where prompt plaintext is processed: inside this hardened process, or in a separate server. */
export type PlaintextBoundary = 'in-process' | 'external-backend';

export interface InferenceBackend {
  readonly kind: 'llama-cpp' | 'openai-compatible';
  readonly plaintextBoundary: PlaintextBoundary;
  models(): ModelInfo[];
  start(): Promise<void>;
  stop(): Promise<void>;
  healthy(): Promise<boolean>;
  /**
   * Serve one OpenAI request, already validated and typed (src/openai). Returns the
   * raw OpenAI response: JSON, or `text/event-stream` SSE ending in `data: [DONE]` when the
   * body asks for `stream: true`. Errors are OpenAI-shaped responses with a status, not throws,
   * except when the backend itself is unreachable (throw UpstreamError). `signal` aborts work.
   */
  handle(request: OpenAiRequest, signal: AbortSignal): Promise<UpstreamResponse>;
}
