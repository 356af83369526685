/**
 * What this node's own backends are doing, per model: requests running, requests waiting for a
 * slot, and answers finished in the last minute. Every request a local backend serves passes
 * through here, whether it came from this node's API or from the mesh, so the numbers a host
 * advertises (load reports) and the ones its own router uses are the same.
 */

/** A model's slots and load as a host states them (the LoadReport wire shape, camel-cased). */
export interface ModelLoadView {
  modelName: string;
  slots: number;
  inFlight: number;
  queued: number;
  servedLastMinute: number;
}

/** Counts events in the last 60 s in one-second buckets (fixed memory, no timestamps kept). */
export class MinuteCounter {
  readonly #buckets = new Uint32Array(60);
  readonly #seconds = new Float64Array(60).fill(-1);

  add(nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    const i = second % 60;
    if (this.#seconds[i] !== second) {
      this.#seconds[i] = second;
      this.#buckets[i] = 0;
    }
    this.#buckets[i]!++;
  }

  count(nowMs: number): number {
    const second = Math.floor(nowMs / 1000);
    let total = 0;
    for (let i = 0; i < 60; i++) if (second - this.#seconds[i]! < 60) total += this.#buckets[i]!;
    return total;
  }
}

interface ModelCounters {
  outstanding: number;
  served: MinuteCounter;
}

export interface LocalLoadOptions {
  /** The local models and how many requests each runs at once. */
  models: () => ReadonlyArray<{ name: string; slots: number }>;
  clock?: () => number;
}

export class LocalLoad {
  readonly #options: LocalLoadOptions;
  readonly #clock: () => number;
  readonly #counters = new Map<string, ModelCounters>();
  readonly #listeners = new Set<() => void>();

  constructor(options: LocalLoadOptions) {
    this.#options = options;
    this.#clock = options.clock ?? Date.now;
  }

  /** Slots of a local model, undefined when this node does not serve it. */
  slots(model: string): number | undefined {
    return this.#options.models().find((m) => m.name === model)?.slots;
  }

  /** Requests running or waiting on the local backend for `model`. */
  outstanding(model: string): number {
    return this.#counters.get(model)?.outstanding ?? 0;
  }

  /** Counts one request from now until `end` (called once; later calls do nothing). */
  begin(model: string): (served: boolean) => void {
    const counters = this.#counter(model);
    counters.outstanding++;
    this.#changed();
    let ended = false;
    return (served) => {
      if (ended) return;
      ended = true;
      counters.outstanding--;
      if (served) counters.served.add(this.#clock());
      this.#changed();
    };
  }

  snapshot(): ModelLoadView[] {
    const now = this.#clock();
    return this.#options.models().map(({ name, slots }) => {
      const counters = this.#counters.get(name);
      const outstanding = counters?.outstanding ?? 0;
      return {
        modelName: name,
        slots,
        inFlight: Math.min(outstanding, slots),
        queued: Math.max(0, outstanding - slots),
        servedLastMinute: counters?.served.count(now) ?? 0,
      };
    });
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #counter(model: string): ModelCounters {
    let counters = this.#counters.get(model);
    if (counters === undefined) {
      // Only models a local backend serves reach here (the router checks), so this stays small.
      counters = { outstanding: 0, served: new MinuteCounter() };
      this.#counters.set(model, counters);
    }
    return counters;
  }

  #changed(): void {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch {
        // an observer's failure must not break request accounting
      }
    }
  }
}
