/**
 * Live host load on /mesh-llm/load/1.0.0 (docs/pooling.md). A node that wants a host's load
 * opens one long-lived stream to it; the host writes a LoadReport frame (varint length +
 * protobuf) at once, then whenever its load changes (at most every 100 ms) and at least every
 * 10 s. Reports are not signed: the libp2p connection (Noise) already proves which peer sends
 * them, and a peer only ever reports its own load. Re-signing and gossiping the announcement
 * instead would cost every node a signature check per change (bench/load-wire.ts).
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { decodeFrames, encodeFrame } from '../mesh/frames.ts';
import type { ByteStream, EndpointId, MeshService, PeerRecord } from '../mesh/types.ts';
import { LoadReportSchema, ModelLoadSchema } from '../proto/gen/mesh_pb.js';
import type { LoadBoard } from './load-board.ts';
import type { ModelLoadView } from './local-load.ts';

export const PROTOCOL_LOAD = '/mesh-llm/load/1.0.0';

export const MAX_REPORTED_MODELS = 64;
export const MAX_MODEL_NAME = 256;
/**
 * The largest valid report fits (64 models whose 256-unit names take up to 3 UTF-8 bytes a
 * unit, four counts and tags each); anything bigger is not a load report.
 */
export const MAX_LOAD_FRAME_BYTES = MAX_REPORTED_MODELS * (MAX_MODEL_NAME * 3 + 64);
/** Counts beyond this are nonsense, not load (and would skew every estimate). */
const MAX_COUNT = 1_000_000;

export class LoadReportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoadReportError';
  }
}

export function encodeLoadReport(models: readonly ModelLoadView[]): Uint8Array {
  return toBinary(
    LoadReportSchema,
    create(LoadReportSchema, {
      models: models.slice(0, MAX_REPORTED_MODELS).map((m) => create(ModelLoadSchema, m)),
    }),
  );
}

export function decodeLoadReport(bytes: Uint8Array): ModelLoadView[] {
  let report: ReturnType<typeof fromBinary<typeof LoadReportSchema>>;
  try {
    report = fromBinary(LoadReportSchema, bytes);
  } catch {
    throw new LoadReportError('load report does not decode');
  }
  if (report.models.length > MAX_REPORTED_MODELS)
    throw new LoadReportError('load report lists too many models');
  return report.models.map((m) => {
    if (m.modelName === '' || m.modelName.length > MAX_MODEL_NAME)
      throw new LoadReportError('load report has a bad model name');
    for (const n of [m.slots, m.inFlight, m.queued, m.servedLastMinute]) {
      if (n > MAX_COUNT) throw new LoadReportError('load report count out of range');
    }
    return {
      modelName: m.modelName,
      slots: m.slots,
      inFlight: m.inFlight,
      queued: m.queued,
      servedLastMinute: m.servedLastMinute,
    };
  });
}

export interface LoadPublisherOptions {
  snapshot: () => ModelLoadView[];
  /** Registers a listener for load changes; returns its removal. */
  onChange: (listener: () => void) => () => void;
  minIntervalMs?: number;
  keepaliveMs?: number;
  /** Subscribers served at once; more are refused. Default 256. */
  maxSubscribers?: number;
  logger: Logger;
}

interface Subscriber {
  stream: ByteStream;
  writing: boolean;
  /** A newer report came while a write was pending: send the latest when it completes. */
  dirty: boolean;
}

/** Host side: streams this node's load to every subscriber. */
export class LoadPublisher {
  readonly #options: LoadPublisherOptions;
  readonly #subscribers = new Set<Subscriber>();
  readonly #minIntervalMs: number;
  #lastSentMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #frame: Uint8Array | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(options: LoadPublisherOptions) {
    this.#options = options;
    this.#minIntervalMs = options.minIntervalMs ?? 100;
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  start(): void {
    this.#unsubscribe = this.#options.onChange(() => this.#schedule());
    this.#keepalive = setInterval(() => this.#broadcast(), this.#options.keepaliveMs ?? 10_000);
    this.#keepalive.unref();
  }

  stop(): void {
    this.#unsubscribe?.();
    clearInterval(this.#keepalive);
    clearTimeout(this.#timer);
    for (const sub of this.#subscribers) sub.stream.abort(new Error('node stopping'));
    this.#subscribers.clear();
  }

  async serve(stream: ByteStream): Promise<void> {
    if (this.#subscribers.size >= (this.#options.maxSubscribers ?? 256)) {
      stream.abort(new Error('too many load subscribers'));
      return;
    }
    const sub: Subscriber = { stream, writing: false, dirty: false };
    this.#subscribers.add(sub);
    this.#send(sub, this.#current());
    try {
      // The subscriber sends nothing; its half-close (or a reset) ends the subscription.
      for await (const _ of stream.source) {
        // ignored: read only so that a misbehaving peer's bytes do not pile up
      }
      await stream.closeWrite().catch(() => undefined);
    } catch {
      // reset by the subscriber or the connection
    } finally {
      this.#subscribers.delete(sub);
    }
  }

  #current(): Uint8Array {
    this.#frame ??= encodeFrame(encodeLoadReport(this.#options.snapshot()));
    return this.#frame;
  }

  #schedule(): void {
    this.#frame = undefined;
    if (this.#timer !== undefined) return;
    const wait = Math.max(0, this.#lastSentMs + this.#minIntervalMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#broadcast();
    }, wait);
    this.#timer.unref();
  }

  #broadcast(): void {
    this.#lastSentMs = Date.now();
    this.#frame = undefined;
    const frame = this.#current();
    for (const sub of this.#subscribers) this.#send(sub, frame);
  }

  #send(sub: Subscriber, frame: Uint8Array): void {
    if (sub.writing) {
      sub.dirty = true;
      return;
    }
    sub.writing = true;
    sub.stream.write(frame).then(
      () => {
        sub.writing = false;
        if (sub.dirty && this.#subscribers.has(sub)) {
          sub.dirty = false;
          this.#send(sub, this.#current());
        }
      },
      (error: unknown) => {
        this.#subscribers.delete(sub);
        this.#options.logger.debug({ err: describeError(error) }, 'load subscriber gone');
        sub.stream.abort(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }
}

export interface LoadSubscriptionsOptions {
  mesh: Pick<MeshService, 'openStream' | 'peers' | 'onPeerEvent'>;
  board: LoadBoard;
  logger: Logger;
  /** Hosts followed at once. Default 256. */
  maxSubscriptions?: number;
  /** First retry delay after a stream fails; doubles up to 30 s. Default 1 s. */
  retryMs?: number;
}

interface Subscription {
  active: boolean;
  stream?: ByteStream;
  wake?: () => void;
}

/** Sender side: follows the load of every host that advertises capacity (field 60). */
export class LoadSubscriptions {
  readonly #options: LoadSubscriptionsOptions;
  readonly #subs = new Map<EndpointId, Subscription>();
  #stopped = false;
  #off: (() => void) | undefined;

  constructor(options: LoadSubscriptionsOptions) {
    this.#options = options;
  }

  start(): void {
    this.#off = this.#options.mesh.onPeerEvent((event) => {
      if (event.type === 'updated') this.#consider(event.peer);
      else this.#drop(event.endpointId);
    });
    for (const peer of this.#options.mesh.peers()) this.#consider(peer);
  }

  stop(): void {
    this.#stopped = true;
    this.#off?.();
    for (const id of [...this.#subs.keys()]) this.#drop(id);
  }

  following(endpointId: EndpointId): boolean {
    return this.#subs.has(endpointId);
  }

  #consider(peer: PeerRecord): void {
    if (this.#stopped || this.#subs.has(peer.endpointId)) return;
    if (peer.announcement.modelCapacity.length === 0) return;
    if (this.#subs.size >= (this.#options.maxSubscriptions ?? 256)) return;
    const sub: Subscription = { active: true };
    this.#subs.set(peer.endpointId, sub);
    void this.#run(peer.endpointId, sub);
  }

  #drop(endpointId: EndpointId): void {
    const sub = this.#subs.get(endpointId);
    if (sub === undefined) return;
    this.#subs.delete(endpointId);
    sub.active = false;
    sub.stream?.abort(new Error('unsubscribed'));
    sub.wake?.();
    this.#options.board.forget(endpointId);
  }

  async #run(endpointId: EndpointId, sub: Subscription): Promise<void> {
    const { mesh, board, logger } = this.#options;
    let delay = this.#options.retryMs ?? 1_000;
    while (sub.active && !this.#stopped) {
      try {
        const stream = await mesh.openStream(endpointId, PROTOCOL_LOAD, {
          signal: AbortSignal.timeout(10_000),
        });
        if (!sub.active) {
          stream.abort(new Error('unsubscribed'));
          return;
        }
        sub.stream = stream;
        for await (const frame of decodeFrames(stream.source, MAX_LOAD_FRAME_BYTES)) {
          board.report(endpointId, decodeLoadReport(frame));
          delay = this.#options.retryMs ?? 1_000;
        }
      } catch (error) {
        // A bad report, or a frame too long or cut short: refused by resetting the stream.
        sub.stream?.abort(error instanceof Error ? error : new Error(String(error)));
        logger.debug({ peer: endpointId.slice(0, 12), err: describeError(error) }, 'load subscription ended');
      }
      sub.stream = undefined;
      board.forget(endpointId);
      if (!sub.active || this.#stopped) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        timer.unref();
        sub.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      sub.wake = undefined;
      delay = Math.min(30_000, delay * 2);
    }
  }
}
