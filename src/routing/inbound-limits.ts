import { NoCapacityError, RateLimitedError, UpstreamTimeoutError } from '../errors.ts';

/** What one member can make a host hold (issue #15 finding 7). */
export interface InboundLimits {
  /** Requests (streams) one peer may have open on this host at once. */
  maxStreamsPerPeer: number;
  /** Request bytes all peers together may have in this host's memory (read or being served). */
  maxBytesInFlight: number;
  /** From a request's first byte to its last. */
  bodyReadTimeoutMs: number;
  /**
   * How long a stream may stay open before its request starts: senders keep warm streams
   * ready (closed after 60 s unused, swept every 30 s), so this is longer than that.
   */
  requestWaitMs: number;
}

export const DEFAULT_INBOUND_LIMITS: InboundLimits = {
  maxStreamsPerPeer: 256,
  maxBytesInFlight: 256 * 1024 * 1024,
  bodyReadTimeoutMs: 60_000,
  requestWaitMs: 120_000,
};

/** One admitted stream: its share of the byte budget, given back by `release`. */
export interface InboundTicket {
  /** Counts `bytes` more against the budgets; throws a typed refusal when over one. */
  reserve(bytes: number): void;
  release(): void;
}

interface PeerUsage {
  streams: number;
  bytes: number;
}

/**
 * Per-peer stream counts and byte shares under one global budget. A peer may hold at most a
 * quarter of the budget (or one whole request, if larger), so one flooding peer is refused on
 * its own while the others keep being served.
 */
export class InboundLimiter {
  readonly limits: InboundLimits;
  readonly #peerShare: number;
  readonly #peers = new Map<string, PeerUsage>();
  #bytes = 0;

  constructor(limits: InboundLimits, maxRequestBytes: number) {
    this.limits = limits;
    this.#peerShare = Math.min(
      limits.maxBytesInFlight,
      Math.max(limits.maxBytesInFlight / 4, maxRequestBytes),
    );
  }

  /** Bytes held by all peers now. */
  get bytesInFlight(): number {
    return this.#bytes;
  }

  admit(peer: string): InboundTicket {
    const usage = this.#peers.get(peer) ?? { streams: 0, bytes: 0 };
    if (usage.streams >= this.limits.maxStreamsPerPeer) {
      throw new RateLimitedError(
        `This host serves at most ${this.limits.maxStreamsPerPeer} concurrent requests per peer`,
        'peer_stream_limit',
      );
    }
    usage.streams += 1;
    this.#peers.set(peer, usage);
    let held = 0;
    let released = false;
    return {
      reserve: (bytes) => {
        if (usage.bytes + bytes > this.#peerShare) {
          throw new RateLimitedError(
            `This peer's requests in flight exceed its share of ${this.#peerShare} bytes on this host`,
            'peer_byte_limit',
          );
        }
        if (this.#bytes + bytes > this.limits.maxBytesInFlight) {
          throw new NoCapacityError(
            'This host holds as many request bytes as it allows; try another',
            'host_busy',
          );
        }
        usage.bytes += bytes;
        this.#bytes += bytes;
        held += bytes;
      },
      release: () => {
        if (released) return;
        released = true;
        usage.bytes -= held;
        this.#bytes -= held;
        usage.streams -= 1;
        if (usage.streams === 0) this.#peers.delete(peer);
      },
    };
  }
}

/**
 * Reads a whole request under the limits: bytes counted against `ticket`, at most `maxBytes`,
 * the first byte within requestWaitMs and the rest within bodyReadTimeoutMs of it. On a
 * deadline `abort` is called (to reset the stream) and a typed error thrown.
 */
export async function readBoundedRequest(
  source: AsyncIterable<Uint8Array>,
  options: {
    ticket: InboundTicket;
    maxBytes: number;
    limits: InboundLimits;
    abort: (error: Error) => void;
    tooLarge: () => Error;
  },
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timedOut: Error | undefined;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number, message: string) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = new UpstreamTimeoutError(message);
      options.abort(timedOut);
    }, ms);
  };
  arm(options.limits.requestWaitMs, 'no request arrived on this stream in time');
  try {
    for await (const chunk of source) {
      if (chunk.byteLength === 0) continue;
      if (size === 0) {
        arm(
          options.limits.bodyReadTimeoutMs,
          `the request was not sent whole within ${options.limits.bodyReadTimeoutMs} ms`,
        );
      }
      size += chunk.byteLength;
      if (size > options.maxBytes) throw options.tooLarge();
      options.ticket.reserve(chunk.byteLength);
      chunks.push(chunk);
    }
  } catch (error) {
    throw timedOut ?? error;
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) throw timedOut;
  if (chunks.length === 1) return chunks[0]!;
  return Buffer.concat(chunks, size);
}
