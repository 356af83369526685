/**
 * This node's view of how busy each remote host is, per model: the host's own latest load
 * report (docs/pooling.md) corrected by what this node itself started and finished since, and the
 * hosts passed over for a while after answering no_capacity. Own counts are exact and immediate;
 * reports add the other senders' load.
 */
import type { EndpointId } from '../mesh/types.ts';
import type { ModelLoadView } from './local-load.ts';

export interface HostLoadEstimate {
  /** Parallel slots, undefined when the host states none (a node from before pooling). */
  slots: number | undefined;
  /** Requests running or waiting on the host for this model, as far as this node can tell. */
  load: number;
  /** From the host's report, when one is current. */
  servedLastMinute: number | undefined;
}

interface Report {
  atMs: number;
  models: Map<string, ModelLoadView>;
  /** This node's own outstanding count per model when the report arrived (already in it). */
  ownAtReport: Map<string, number>;
}

export interface LoadBoardOptions {
  clock?: () => number;
  /** A report older than this is ignored (hosts send one at least every 10 s). Default 25 s. */
  staleAfterMs?: number;
  /** Most (host, model) pairs passed over at once; the oldest go first. Default 4096. */
  maxPassedOver?: number;
}

const key = (host: string, model: string) => `${host}\u0000${model}`;

export class LoadBoard {
  readonly #clock: () => number;
  readonly #staleAfterMs: number;
  readonly #maxPassedOver: number;
  readonly #own = new Map<string, number>();
  readonly #reports = new Map<EndpointId, Report>();
  readonly #passedOver = new Map<string, number>();
  readonly #listeners = new Set<() => void>();

  constructor(options: LoadBoardOptions = {}) {
    this.#clock = options.clock ?? Date.now;
    this.#staleAfterMs = options.staleAfterMs ?? 25_000;
    this.#maxPassedOver = options.maxPassedOver ?? 4096;
  }

  /** Counts one request this node sent to `host`, until the returned function is called. */
  begin(host: EndpointId, model: string): () => void {
    const k = key(host, model);
    this.#own.set(k, (this.#own.get(k) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = (this.#own.get(k) ?? 1) - 1;
      if (left <= 0) this.#own.delete(k);
      else this.#own.set(k, left);
      this.#changed();
    };
  }

  /** Requests this node has outstanding at `host` for `model`. */
  own(host: EndpointId, model: string): number {
    return this.#own.get(key(host, model)) ?? 0;
  }

  /** The host's latest report replaces its previous one. */
  report(host: EndpointId, models: readonly ModelLoadView[]): void {
    const report: Report = { atMs: this.#clock(), models: new Map(), ownAtReport: new Map() };
    for (const m of models) {
      report.models.set(m.modelName, m);
      report.ownAtReport.set(m.modelName, this.own(host, m.modelName));
    }
    this.#reports.set(host, report);
    this.#changed();
  }

  /** The host left or its report stream ended: only own counts remain. */
  forget(host: EndpointId): void {
    if (this.#reports.delete(host)) this.#changed();
  }

  estimate(host: EndpointId, model: string, advertisedSlots: number | undefined): HostLoadEstimate {
    const own = this.own(host, model);
    const report = this.#reports.get(host);
    const stated =
      report !== undefined && this.#clock() - report.atMs <= this.#staleAfterMs
        ? report.models.get(model)
        : undefined;
    if (stated === undefined) return { slots: advertisedSlots, load: own, servedLastMinute: undefined };
    // The report counted what this node had outstanding then; add what it started since.
    const since = own - (report!.ownAtReport.get(model) ?? 0);
    return {
      slots: stated.slots > 0 ? stated.slots : advertisedSlots,
      load: Math.max(own, stated.inFlight + stated.queued + since),
      servedLastMinute: stated.servedLastMinute,
    };
  }

  /** After a no_capacity answer: leave this host out for `ms` unless nothing else is left. */
  passOver(host: EndpointId, model: string, ms: number): void {
    const now = this.#clock();
    const k = key(host, model);
    this.#passedOver.delete(k);
    this.#passedOver.set(k, now + ms);
    for (const [other, until] of this.#passedOver) {
      if (this.#passedOver.size <= this.#maxPassedOver && until > now) break;
      this.#passedOver.delete(other);
    }
  }

  passedOver(host: EndpointId, model: string): boolean {
    const k = key(host, model);
    const until = this.#passedOver.get(k);
    if (until === undefined) return false;
    if (until > this.#clock()) return true;
    this.#passedOver.delete(k);
    return false;
  }

  /** Called whenever a slot may have freed (an own request ended, a report came, a host left). */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch {
        // an observer's failure must not break accounting
      }
    }
  }
}
