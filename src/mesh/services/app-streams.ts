import type { Connection, Startable, Stream } from '@libp2p/interface';
import { ConfigError, UpstreamError } from '../../errors.ts';
import { pipeBoth, toByteStream } from '../byte-stream.ts';
import { endpointIdFromBytes, endpointIdFromPeerId, endpointIdToBytes, isEndpointId } from '../identity.ts';
import { isRelayed } from '../race-dial.ts';
import {
  type ByteStream,
  type EndpointId,
  PROTOCOL_FORWARD,
  PROTOCOL_GOSSIP,
  PROTOCOL_HTTP,
  type StreamTapEvent,
} from '../types.ts';
import { WarmStreamPool } from '../warm-streams.ts';
import { anySignal, listen, type MeshComponents, type MeshContext, short } from './context.ts';
import { type OpenedStream, STREAM_LIMIT } from './dialer.ts';

export type AppHandler = (stream: ByteStream, remote: EndpointId) => void | Promise<void>;

const FORWARD_HEADER_TIMEOUT_MS = 30_000;
const WARM_STREAMS_REFILL_AT = 2;
const WARM_STREAM_IDLE_MS = 60_000;

export interface AppStreamsInit {
  /** How long an inbound stream waits for an unknown remote's announcement. */
  memberWaitMs: number;
  /** Sees every chunk of every app-protocol stream (gossip excluded), forwarded ones too. */
  streamTap?: (event: StreamTapEvent) => void;
  /** Pre-negotiated HTTP streams kept per recently used host (0 disables). */
  warmStreams: number;
  /** A new outbound stream to a member (the dialer's). */
  negotiate: (endpointId: EndpointId, protocol: string, signal: AbortSignal) => Promise<OpenedStream>;
  /** The node's openStream (refused once it stops): the legs of a forward. */
  openStream: (target: EndpointId, protocol: string, signal: AbortSignal | undefined) => Promise<ByteStream>;
}

/**
 * App-protocol streams. Inbound: only members of this mesh are served, each protocol by its
 * registered handler; PROTOCOL_FORWARD streams are piped on to their target (app-level relay).
 * Outbound: HTTP streams come from a pool of pre-negotiated ones when one is ready.
 */
export class AppStreamsService implements Startable {
  private readonly context: MeshContext;
  private readonly init: AppStreamsInit;
  private readonly components: MeshComponents;
  private readonly handlers = new Map<string, AppHandler>();
  private readonly registered = new Set<string>();
  private readonly warm: WarmStreamPool<OpenedStream>;
  private detachOpen: (() => void) | undefined;
  private started = false;

  constructor(context: MeshContext, init: AppStreamsInit, components: MeshComponents) {
    this.context = context;
    this.init = init;
    this.components = components;
    this.warm = new WarmStreamPool<OpenedStream>({
      size: init.warmStreams,
      refillAt: Math.min(WARM_STREAMS_REFILL_AT, init.warmStreams - 1),
      idleMs: WARM_STREAM_IDLE_MS,
      open: (endpointId) => init.negotiate(endpointId, PROTOCOL_HTTP, context.stopSignal),
      usable: ({ stream }) => isFresh(stream),
      // A plain close reaches the host as an empty request, which it ends quietly.
      discard: ({ stream }) => void stream.close().catch(() => stream.abort(new Error('discarded'))),
      onOpenError: (endpointId, err) =>
        context.log.debug(
          { peer: short(endpointId), err: (err as Error).message },
          'warm stream open failed',
        ),
    });
  }

  async start(): Promise<void> {
    this.started = true;
    // Streams kept warm over a relayed connection would keep requests on the relay.
    this.detachOpen = listen(this.components, this.context.log, 'connection:open', (evt) => {
      const remote = endpointIdFromPeerId(evt.detail.remotePeer);
      if (!isRelayed(evt.detail) && remote !== undefined) this.warm.drop(remote);
    });
    await this.register(PROTOCOL_FORWARD);
    for (const protocol of this.handlers.keys()) await this.register(protocol);
  }

  beforeStop(): void {
    this.warm.stop();
  }

  stop(): void {
    this.started = false;
    this.registered.clear();
    this.detachOpen?.();
  }

  /** A stream to a member: a warm one for PROTOCOL_HTTP when ready, else a new one. */
  async open(endpointId: EndpointId, protocol: string, signal: AbortSignal | undefined): Promise<ByteStream> {
    const pooled = protocol === PROTOCOL_HTTP;
    // The combined signal is built only for a negotiation: a warm stream needs none.
    const opened =
      (pooled ? this.warm.take(endpointId) : undefined) ??
      (await this.init.negotiate(endpointId, protocol, anySignal(signal, this.context.stopSignal)));
    if (pooled) opened.stream.addEventListener('close', () => this.warm.refill(endpointId), { once: true });
    return { ...this.wrap(opened.stream, protocol, endpointId), path: opened.path };
  }

  /** A PROTOCOL_HTTP stream to `target` that `via` pipes on (app-level forwarding). */
  async openForwarded(
    via: EndpointId,
    target: EndpointId,
    signal: AbortSignal | undefined,
  ): Promise<ByteStream> {
    if (!isEndpointId(target)) throw new UpstreamError('invalid forward target', 'peer_unknown');
    const stream = await this.init.openStream(via, PROTOCOL_FORWARD, signal);
    try {
      await stream.write(endpointIdToBytes(target));
    } catch (err) {
      stream.abort(err as Error);
      throw new UpstreamError(`forwarding through ${short(via)} failed`, 'upstream_failed', { cause: err });
    }
    return stream;
  }

  /** Pre-negotiated HTTP streams ready for `endpointId` (tests, diagnostics). */
  warmCount(endpointId: EndpointId): number {
    return this.warm.size(endpointId);
  }

  /** Closes the warm streams to a peer (it disconnected, was revoked, or got a direct connection). */
  drop(endpointId: EndpointId): void {
    this.warm.drop(endpointId);
  }

  handle(protocol: string, handler: AppHandler): void {
    if (protocol === PROTOCOL_GOSSIP || protocol === PROTOCOL_FORWARD) {
      throw new ConfigError(`${protocol} is handled by the mesh itself`);
    }
    this.handlers.set(protocol, handler);
    if (this.started && !this.registered.has(protocol)) {
      this.register(protocol).catch((err: Error) => {
        this.context.log.error({ protocol, err: err.message }, 'could not register protocol handler');
      });
    }
  }

  private async register(protocol: string): Promise<void> {
    this.registered.add(protocol);
    await this.components.registrar.handle(
      protocol,
      (stream, connection) => {
        void this.onStream(protocol, stream, connection);
      },
      {
        runOnLimitedConnection: true,
        maxInboundStreams: STREAM_LIMIT,
        maxOutboundStreams: STREAM_LIMIT,
        force: true,
      },
    );
  }

  private async onStream(protocol: string, stream: Stream, connection: Connection): Promise<void> {
    const { log, table, stopSignal } = this.context;
    const remote = endpointIdFromPeerId(connection.remotePeer);
    if (remote === undefined) {
      stream.abort(new Error('peer identity is not Ed25519'));
      return;
    }
    const bytes = this.wrap(stream, protocol, remote);
    try {
      // Only members of this mesh (a verified announcement with our mesh id) are served.
      if (!(await table.whenKnown(remote, this.init.memberWaitMs, stopSignal))) {
        log.info({ protocol, remote: short(remote) }, 'refused stream from a non-member');
        bytes.abort(new Error('not a member of this mesh'));
        return;
      }
      if (protocol === PROTOCOL_FORWARD) {
        await this.onForward(bytes, remote);
        return;
      }
      const handler = this.handlers.get(protocol);
      if (handler === undefined) {
        bytes.abort(new Error('protocol not handled'));
        return;
      }
      await handler(bytes, remote);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      log.warn(
        { protocol, remote: short(remote), err: error.name, msg: error.message },
        'stream handler failed',
      );
      bytes.abort(error);
    }
  }

  /** Middle node of a forward: read the 32-byte target, then only pipe bytes. */
  private async onForward(inbound: ByteStream, remote: EndpointId): Promise<void> {
    const { log, table, endpointId, stopSignal } = this.context;
    const iterator = inbound.source[Symbol.asyncIterator]();
    let head: Uint8Array = new Uint8Array(0);
    const timer = setTimeout(
      () => inbound.abort(new Error('forward header timeout')),
      FORWARD_HEADER_TIMEOUT_MS,
    );
    try {
      while (head.byteLength < 32) {
        const next = await iterator.next();
        if (next.done === true) throw new Error('forward stream ended before the target id');
        head = concatBytes(head, next.value);
      }
    } finally {
      clearTimeout(timer);
    }
    const target = endpointIdFromBytes(head.subarray(0, 32));
    if (target === endpointId || target === remote || table.get(target) === undefined) {
      log.info({ from: short(remote), target: short(target) }, 'refused forward to an unknown target');
      inbound.abort(new Error('unknown forward target'));
      return;
    }
    let outbound: ByteStream;
    try {
      outbound = await this.init.openStream(target, PROTOCOL_HTTP, stopSignal);
    } catch (err) {
      // Routine when a host just went away (members ask whether it still answers): the reset
      // tells the sender; no warning here.
      log.debug(
        { from: short(remote), target: short(target), err: (err as Error).message },
        'forward target unreachable',
      );
      inbound.abort(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const rest = head.subarray(32);
    if (rest.byteLength > 0) await outbound.write(rest);
    const remainder: ByteStream = {
      source: { [Symbol.asyncIterator]: () => iterator },
      write: (chunk) => inbound.write(chunk),
      closeWrite: () => inbound.closeWrite(),
      abort: (error) => inbound.abort(error),
    };
    log.debug({ from: short(remote), target: short(target) }, 'forwarding stream');
    await pipeBoth(remainder, outbound);
  }

  private wrap(stream: Stream, protocol: string, remote: EndpointId): ByteStream {
    const tap = this.init.streamTap;
    if (tap === undefined || protocol === PROTOCOL_GOSSIP) return toByteStream(stream);
    return toByteStream(stream, (direction, bytes) => {
      try {
        tap({ protocol, direction, remote, bytes });
      } catch {
        // A faulty observer must not break the stream.
      }
    });
  }
}

export function meshAppStreams(
  context: MeshContext,
  init: AppStreamsInit,
): (components: MeshComponents) => AppStreamsService {
  return (components) => new AppStreamsService(context, init, components);
}

/** Open both ways and never used: safe to carry a new request. */
function isFresh(stream: Stream): boolean {
  return (
    stream.status === 'open' &&
    stream.writeStatus === 'writable' &&
    stream.readStatus === 'readable' &&
    stream.remoteWriteStatus === 'writable' &&
    stream.remoteReadStatus === 'readable'
  );
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}
