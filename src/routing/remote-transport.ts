import { E2E_MAGIC, sealRequest } from '../crypto/envelope.ts';
import { isE2EError } from '../crypto/errors.ts';
import type { PreparedExchanges } from '../crypto/prepared-exchanges.ts';
import { openResponse } from '../crypto/response-frames.ts';
import { describeError, MeshError, PeerLostError, UpstreamError } from '../errors.ts';
import { type ApiRequest, bodyOf, readAll, type UpstreamResponse } from '../http/exchange.ts';
import { parseResponse, serializeRequest } from '../http/http1.ts';
import { StreamClosedError } from '../mesh/byte-stream.ts';
import type { ByteStream, EndpointId, MeshService } from '../mesh/types.ts';
import { PROTOCOL_HTTP } from '../mesh/types.ts';
import { type AnswerBounds, AnswerWatchdog, boundedBody, DEFAULT_ANSWER_BOUNDS } from './answer-bounds.ts';

export type StreamPath = 'direct' | 'relay' | 'forwarded';

export interface RemoteSendOptions {
  /** The host's inference key from its verified announcement; undefined = plaintext. */
  inferenceKey: Uint8Array | undefined;
  signal: AbortSignal;
  /** The client streams the answer; otherwise it is buffered and capped at maxAnswerBytes. */
  stream?: boolean;
}

export interface RemoteResponse extends UpstreamResponse {
  path: StreamPath;
  encrypted: boolean;
}

/**
 * Carries one HTTP exchange to a remote host over /mesh-llm/http/1.0.0: sealed to the host's
 * inference key when it has one (SPEC §5), plaintext HTTP/1.1 otherwise. Either way the answer
 * comes back as an ordinary UpstreamResponse, so everything above is identical.
 */
export interface RemoteTransportOptions {
  mesh: Pick<MeshService, 'openStream' | 'openForwardedStream' | 'peers'>;
  /** Key exchanges prepared ahead for hosts this node sends to; absent = made per request. */
  exchanges?: PreparedExchanges;
  /** Told the E2EError code whenever an answer fails to open (metrics). */
  onE2eFailure?: (code: string) => void;
  /** Deadlines and the size cap for answers; defaults in DEFAULT_ANSWER_BOUNDS. */
  bounds?: Partial<AnswerBounds>;
}

export class RemoteTransport {
  readonly #mesh: RemoteTransportOptions['mesh'];
  readonly #exchanges: PreparedExchanges | undefined;
  readonly #onE2eFailure: (error: unknown) => void;
  readonly #bounds: AnswerBounds;

  constructor(options: RemoteTransportOptions) {
    this.#mesh = options.mesh;
    this.#exchanges = options.exchanges;
    const report = options.onE2eFailure;
    this.#onE2eFailure = (error) => {
      if (report && isE2EError(error)) report(error.code);
    };
    this.#bounds = { ...DEFAULT_ANSWER_BOUNDS, ...options.bounds };
  }

  async send(target: EndpointId, request: ApiRequest, options: RemoteSendOptions): Promise<RemoteResponse> {
    const { stream, path } = await this.#open(target, options.signal);
    const onAbort = () => stream.abort(new Error('request cancelled'));
    options.signal.addEventListener('abort', onAbort, { once: true });
    // A host that never answers, or stalls, is cut off (and the router tries the next one).
    const watchdog = new AnswerWatchdog(this.#bounds, (error) => stream.abort(error));
    try {
      let source: AsyncIterable<Uint8Array> = stream.source;
      const key = options.inferenceKey;
      if (key) {
        const plaintext = serializeRequest(request, { 'x-mesh-sent-at': String(Date.now()) });
        const { envelope, session } = sealRequest(plaintext, key, this.#exchanges?.take(key));
        // openResponse owns the session from here and wipes it when the answer ends.
        source = openResponse(refusalOrSealed(stream.source, session), session);
        await stream.write(envelope).catch((error) => {
          session.dispose();
          throw error;
        });
      } else {
        await stream.write(serializeRequest(request));
      }
      await stream.closeWrite();
      // The request's bytes are queued for the socket, whose flush is already scheduled for
      // this turn: the next exchange for this host is made after it, while the host answers.
      if (key && this.#exchanges) {
        const exchanges = this.#exchanges;
        setImmediate(() => exchanges.prepare(key));
      }
      const response = await parseResponse(source).catch((error) => {
        if (error instanceof HostRefusal) return error.response;
        throw error;
      });
      const maxBytes = options.stream === true ? Number.POSITIVE_INFINITY : this.#bounds.maxAnswerBytes;
      return {
        ...response,
        body: guardBody(
          boundedBody(response.body, watchdog, maxBytes),
          stream,
          watchdog,
          this.#onE2eFailure,
          () => options.signal.removeEventListener('abort', onAbort),
        ),
        path,
        encrypted: options.inferenceKey !== undefined,
      };
    } catch (error) {
      watchdog.stop();
      options.signal.removeEventListener('abort', onAbort);
      this.#onE2eFailure(error);
      stream.abort(error instanceof Error ? error : new Error(String(error)));
      throw watchdog.error() ?? beforeAnswerError(error, path, target);
    }
  }

  async #open(target: EndpointId, signal: AbortSignal): Promise<{ stream: ByteStream; path: StreamPath }> {
    try {
      const stream = await this.#mesh.openStream(target, PROTOCOL_HTTP, { signal });
      return { stream, path: stream.path ?? 'direct' };
    } catch (directError) {
      // A host whose connection just died is not sought through others: it most likely crashed.
      if (directError instanceof PeerLostError) throw directError;
      // Not dialable (e.g. learned transitively and behind NAT): ask connected peers to forward.
      for (const peer of this.#mesh.peers()) {
        if (!peer.connected || peer.endpointId === target || signal.aborted) continue;
        try {
          const stream = await this.#mesh.openForwardedStream(peer.endpointId, target, { signal });
          return { stream, path: 'forwarded' };
        } catch {
          // try the next carrier
        }
      }
      throw new UpstreamError(
        `could not reach host ${target.slice(0, 12)}: ${describeError(directError)}`,
        directError instanceof MeshError ? directError.code : 'peer_unreachable',
      );
    }
  }
}

/** A host's plaintext refusal of an encrypted request, carried out of the E2E opener. */
class HostRefusal extends Error {
  readonly response: UpstreamResponse;
  constructor(response: UpstreamResponse) {
    super('the host refused the request');
    this.response = response;
  }
}

/**
 * A host that cannot take a request (over a per-peer or global limit) refuses it before it
 * opens anything, so in plaintext. Such an answer is accepted as an error status only: a
 * 2xx in plaintext to a sealed request is a wire error, never content.
 */
async function* refusalOrSealed(
  source: AsyncIterable<Uint8Array>,
  session: { dispose(): void },
): AsyncGenerator<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  const first = await iterator.next();
  const rest = (async function* () {
    if (!first.done) yield first.value;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  })();
  if (first.done || first.value[0] === E2E_MAGIC) {
    yield* rest;
    return;
  }
  session.dispose();
  const refusal = await parseResponse(rest);
  if (refusal.status < 400) throw new UpstreamError('the host answered an encrypted request in plaintext');
  const body = await readAll(refusal.body, MAX_REFUSAL_BYTES);
  throw new HostRefusal({ ...refusal, body: bodyOf(body) });
}

const MAX_REFUSAL_BYTES = 64 * 1024;

/** E2E codes that say the stream ended early, not that received bytes failed to open. */
const ENDED_EARLY = new Set(['truncated', 'missing_end']);

/**
 * E2E and wire failures become typed upstream errors (never a generic 500). What happened to
 * the stream decides: closed or reset under the answer, or ended before the answer's end
 * marker, is a transport failure (upstream_reset); only bytes that arrived and failed to
 * authenticate or parse as frames are an end-to-end failure (e2e_*).
 */
function asUpstreamError(error: unknown): MeshError {
  if (error instanceof MeshError) return error;
  if (isConnectionLoss(error) || isStreamReset(error))
    return new UpstreamError(`the host's stream broke off: ${error.message}`, 'upstream_reset', {
      cause: error,
    });
  if (isE2EError(error)) {
    if (ENDED_EARLY.has(error.code))
      return new UpstreamError(
        `the host's answer ended before its end (${error.message})`,
        'upstream_reset',
        {
          cause: error,
        },
      );
    return new UpstreamError(`end-to-end decryption failed (${error.code})`, `e2e_${error.code}`);
  }
  return new UpstreamError(describeError(error), 'upstream_failed', { cause: error });
}

/**
 * A failure before the answer's head arrived. The connection closing under the stream (our
 * ping found it dead, a relay dropped the circuit), or a forwarding node resetting it (it could
 * not reach the host), means the host is unreachable: nothing of the answer was lost.
 */
function beforeAnswerError(error: unknown, path: StreamPath, target: EndpointId): MeshError {
  if (isConnectionLoss(error) || (path === 'forwarded' && isStreamReset(error))) {
    const how = path === 'forwarded' ? 'through the forwarding node' : 'its connection closed';
    return new UpstreamError(
      `could not reach host ${target.slice(0, 12)} (${how} before it answered)`,
      'peer_unreachable',
      { cause: error },
    );
  }
  return asUpstreamError(error);
}

/** The remote reset the stream. */
function isStreamReset(error: unknown): error is Error {
  return error instanceof Error && error.name === 'StreamResetError';
}

/** Names libp2p gives a stream's end when its connection closed or was aborted under it. */
const CONNECTION_LOSS = new Set([
  'StreamAbortedError',
  'ConnectionClosedError',
  'MuxerClosedError',
  'TimeoutError',
]);

/**
 * The stream's connection closed (StreamClosedError) or was aborted under it (libp2p's ping
 * timed out: the stream ends with that error). Our own deadlines are told apart before this.
 */
function isConnectionLoss(error: unknown): error is Error {
  return error instanceof StreamClosedError || (error instanceof Error && CONNECTION_LOSS.has(error.name));
}

/**
 * Maps mid-stream failures to typed errors (a deadline that fired says so), resets the stream
 * when the answer fails, and runs `cleanup` however the body ends.
 */
async function* guardBody(
  source: AsyncIterable<Uint8Array>,
  stream: ByteStream,
  watchdog: AnswerWatchdog,
  onFailure: (error: unknown) => void,
  cleanup: () => void,
): AsyncGenerator<Uint8Array> {
  try {
    yield* source;
  } catch (error) {
    onFailure(error);
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw watchdog.error() ?? asUpstreamError(error);
  } finally {
    watchdog.stop();
    cleanup();
  }
}
