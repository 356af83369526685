/**
 * What GET /api/traffic answers: lifetime counters per model. The console reads the same shape
 * (console/src imports these types), so a change here is a change to both ends.
 */
export interface ModelTraffic {
  model: string;
  requests: number;
  errors: number;
  latencySecondsSum: number;
  latencyCount: number;
  ttftSecondsSum: number;
  ttftCount: number;
  completionTokens: number;
  /** Time spent streaming after the first byte: tokens / this = tokens per second. */
  generationSeconds: number;
}

export interface TrafficReport {
  /** When the counters were read (ms since the epoch). */
  at: number;
  models: ModelTraffic[];
}
