/**
 * One node's Prometheus metrics (served as /metrics on the console port). Each node has its own
 * registry, so several nodes in one process (tests, the demo) never mix their numbers. Label
 * values are bounded sets chosen here (model names the node lists, routes, statuses, error
 * codes, tiers): never a prompt, a key, a token or the mesh id.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ModelTraffic } from './traffic-shape.ts';

export type RouteLabel = 'local' | 'direct' | 'relay' | 'forwarded' | 'none';

/** One peer as the peer gauge counts it. */
export interface PeerSample {
  tier: string;
  link: string;
}

const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const MAX_LABEL_CHARS = 64;

export class NodeMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'model' | 'route' | 'status'>;
  readonly latency: Histogram<'model' | 'route'>;
  readonly ttft: Histogram<'model' | 'route'>;
  readonly tokens: Counter<'model' | 'kind'>;
  readonly generationSeconds: Counter<'model'>;
  readonly inFlight: Gauge<'model'>;
  readonly e2eFailures: Counter<'reason' | 'side'>;
  readonly attestationFailures: Counter<'reason'>;
  #peerSource: () => PeerSample[] = () => [];

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'mesh_llm_requests_total',
      help: 'Inference requests this node answered, by model, route taken and HTTP status',
      labelNames: ['model', 'route', 'status'],
      registers,
    });
    this.latency = new Histogram({
      name: 'mesh_llm_request_duration_seconds',
      help: 'Time from receiving an inference request to the last byte of its answer',
      labelNames: ['model', 'route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.ttft = new Histogram({
      name: 'mesh_llm_time_to_first_token_seconds',
      help: 'Time from receiving an inference request to the first byte of its answer',
      labelNames: ['model', 'route'],
      buckets: TTFT_BUCKETS,
      registers,
    });
    this.tokens = new Counter({
      name: 'mesh_llm_tokens_total',
      help: 'Tokens in answered requests (kind: prompt or completion), from usage or streamed chunks',
      labelNames: ['model', 'kind'],
      registers,
    });
    this.generationSeconds = new Counter({
      name: 'mesh_llm_generation_seconds_total',
      help: 'Seconds between the first and the last byte of answers (completion tokens / this = tokens/s)',
      labelNames: ['model'],
      registers,
    });
    this.inFlight = new Gauge({
      name: 'mesh_llm_requests_in_flight',
      help: 'Inference requests this node is answering right now',
      labelNames: ['model'],
      registers,
    });
    this.e2eFailures = new Counter({
      name: 'mesh_llm_e2e_failures_total',
      help: 'End-to-end encryption failures by reason (side: host opening a request, client opening an answer)',
      labelNames: ['reason', 'side'],
      registers,
    });
    this.attestationFailures = new Counter({
      name: 'mesh_llm_attestation_failures_total',
      help: 'Peer attestation statements or liveness challenges that failed verification, by reason',
      labelNames: ['reason'],
      registers,
    });
    const source = () => this.#peerSource();
    new Gauge({
      name: 'mesh_llm_peers',
      help: 'Known peers by attestation tier and link (direct, relayed, transitive, disconnected)',
      labelNames: ['tier', 'link'],
      registers,
      collect() {
        this.reset();
        for (const peer of source()) this.inc({ tier: label(peer.tier), link: label(peer.link) });
      },
    });
    if (options.defaultMetrics === true) collectDefaultMetrics({ register: this.registry });
  }

  /** Where the peer gauge reads the current peers from (set once the mesh exists). */
  setPeerSource(source: () => PeerSample[]): void {
    this.#peerSource = source;
  }

  /** The Prometheus text exposition of everything in this registry. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Per-model totals for the console (it turns deltas between polls into rates). */
  async traffic(): Promise<ModelTraffic[]> {
    const models = new Map<string, ModelTraffic>();
    const entry = (model: string) => {
      let t = models.get(model);
      if (!t) {
        t = {
          model,
          requests: 0,
          errors: 0,
          latencySecondsSum: 0,
          latencyCount: 0,
          ttftSecondsSum: 0,
          ttftCount: 0,
          completionTokens: 0,
          generationSeconds: 0,
        };
        models.set(model, t);
      }
      return t;
    };
    for (const v of (await this.requests.get()).values) {
      const t = entry(String(v.labels.model));
      t.requests += v.value;
      if (Number(v.labels.status) >= 400) t.errors += v.value;
    }
    for (const [histogram, sum, count] of [
      [this.latency, 'latencySecondsSum', 'latencyCount'],
      [this.ttft, 'ttftSecondsSum', 'ttftCount'],
    ] as const) {
      for (const v of (await histogram.get()).values) {
        const t = entry(String(v.labels.model));
        if (v.metricName?.endsWith('_sum')) t[sum] += v.value;
        if (v.metricName?.endsWith('_count')) t[count] += v.value;
      }
    }
    for (const v of (await this.tokens.get()).values) {
      if (v.labels.kind === 'completion') entry(String(v.labels.model)).completionTokens += v.value;
    }
    for (const v of (await this.generationSeconds.get()).values) {
      entry(String(v.labels.model)).generationSeconds += v.value;
    }
    return [...models.values()].sort((a, b) => a.model.localeCompare(b.model));
  }
}

/** A label value of bounded length (values come from peers' announcements). */
export function label(value: string): string {
  return value.length > MAX_LABEL_CHARS ? value.slice(0, MAX_LABEL_CHARS) : value;
}
