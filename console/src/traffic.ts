/** Turns /api/traffic totals into rates between two polls, and keeps a short history. */
import type { ModelTraffic, Traffic } from './types.ts';

export interface Rates {
  requestsPerMin: number;
  /** Mean over the interval; undefined when nothing finished in it. */
  latencyS?: number;
  ttftS?: number;
  tokensPerS?: number;
  errorsPerMin: number;
}

const HISTORY = 60;

/** Rates are taken over about this long, so one request does not read as a spike. */
const WINDOW_MS = 30_000;

export class TrafficTracker {
  readonly #snapshots: Traffic[] = [];
  readonly history: { at: number; requestsPerMin: number; tokensPerS: number }[] = [];
  totals: Rates = { requestsPerMin: 0, errorsPerMin: 0 };
  readonly perModel = new Map<string, Rates>();
  /** Lifetime totals, for models that saw requests before the page opened. */
  readonly lifetime = new Map<string, ModelTraffic>();

  update(next: Traffic): void {
    this.#snapshots.push(next);
    while (this.#snapshots.length > 2 && next.at - this.#snapshots[1]!.at >= WINDOW_MS)
      this.#snapshots.shift();
    const prev = this.#snapshots.length > 1 ? this.#snapshots[0] : undefined;
    this.lifetime.clear();
    for (const m of next.models) this.lifetime.set(m.model, m);
    if (!prev) return;
    const minutes = Math.max((next.at - prev.at) / 60_000, 1e-6);
    const sum = emptyTraffic('*');
    const sumPrev = emptyTraffic('*');
    this.perModel.clear();
    for (const m of next.models) {
      const before = prev.models.find((p) => p.model === m.model) ?? emptyTraffic(m.model);
      this.perModel.set(m.model, rates(before, m, minutes));
      add(sum, m);
      add(sumPrev, before);
    }
    this.totals = rates(sumPrev, sum, minutes);
    this.history.push({
      at: next.at,
      requestsPerMin: this.totals.requestsPerMin,
      tokensPerS: this.totals.tokensPerS ?? 0,
    });
    if (this.history.length > HISTORY) this.history.shift();
  }
}

function rates(a: ModelTraffic, b: ModelTraffic, minutes: number): Rates {
  const d = (k: keyof Omit<ModelTraffic, 'model'>) => Math.max(0, b[k] - a[k]);
  const latencyN = d('latencyCount');
  const ttftN = d('ttftCount');
  const gen = d('generationSeconds');
  return {
    requestsPerMin: d('requests') / minutes,
    errorsPerMin: d('errors') / minutes,
    latencyS: latencyN > 0 ? d('latencySecondsSum') / latencyN : undefined,
    ttftS: ttftN > 0 ? d('ttftSecondsSum') / ttftN : undefined,
    tokensPerS: gen > 0 ? d('completionTokens') / gen : undefined,
  };
}

export function emptyTraffic(model: string): ModelTraffic {
  return {
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
}

function add(into: ModelTraffic, m: ModelTraffic): void {
  into.requests += m.requests;
  into.errors += m.errors;
  into.latencySecondsSum += m.latencySecondsSum;
  into.latencyCount += m.latencyCount;
  into.ttftSecondsSum += m.ttftSecondsSum;
  into.ttftCount += m.ttftCount;
  into.completionTokens += m.completionTokens;
  into.generationSeconds += m.generationSeconds;
}

/** Lifetime means, shown until the page has seen traffic of its own. */
export function lifetimeRates(m: ModelTraffic | undefined): Partial<Rates> {
  if (!m) return {};
  return {
    latencyS: m.latencyCount > 0 ? m.latencySecondsSum / m.latencyCount : undefined,
    ttftS: m.ttftCount > 0 ? m.ttftSecondsSum / m.ttftCount : undefined,
    tokensPerS: m.generationSeconds > 0 ? m.completionTokens / m.generationSeconds : undefined,
  };
}
