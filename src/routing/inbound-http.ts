import { E2E_MAGIC, openRequest, type ReplayGuard } from '../crypto/envelope.ts';
import { E2EError } from '../crypto/errors.ts';
import type { InferenceKeyring } from '../crypto/inference-keys.ts';
import { ResponseSealer } from '../crypto/response-frames.ts';
import {
  BodyTooLargeError,
  describeError,
  InvalidRequestError,
  MeshError,
  UpstreamTimeoutError,
} from '../errors.ts';
import type { ApiRequest, UpstreamResponse } from '../http/exchange.ts';
import { HttpWireError, parseRequest, serializeResponseHead } from '../http/http1.ts';
import type { Logger } from '../log.ts';
import { joinBatch, TurnBatcher } from '../mesh/turn-batcher.ts';
import type { ByteStream, EndpointId } from '../mesh/types.ts';
import { errorResponse } from '../openai/errors.ts';
import { parseOpenAiRequest } from '../openai/request.ts';
import {
  DEFAULT_INBOUND_LIMITS,
  InboundLimiter,
  type InboundLimits,
  type InboundTicket,
  readBoundedRequest,
} from './inbound-limits.ts';
import type { Router } from './router.ts';

export interface InboundHttpOptions {
  router: Pick<Router, 'dispatchLocal'>;
  /** Absent on a node without inference-key support: 0xE1 is then just a bad request. */
  e2e?: { keyring: InferenceKeyring; replayGuard: ReplayGuard };
  /** False under --require-encryption: plaintext requests from old peers are refused. */
  acceptPlaintext: boolean;
  maxRequestBytes: number;
  /** What one member may make this host hold; defaults in DEFAULT_INBOUND_LIMITS. */
  limits?: Partial<InboundLimits>;
  logger: Logger;
  /** Told the E2EError code of each encrypted request that could not be opened (metrics). */
  onE2eFailure?: (code: string) => void;
}

/** How long a refused stream stays open for the sender to read the refusal. */
const REFUSED_STREAM_GRACE_MS = 5_000;

/** Envelope JSON + base64 + box overhead on top of the plaintext cap. */
const ENVELOPE_OVERHEAD = (bytes: number) => Math.ceil(bytes / 3) * 4 + 4096;

/**
 * Serves requests that arrive over /mesh-llm/http/1.0.0 from local backends only. Encrypted
 * requests are opened here, inside the host process, and the answer is sealed frame by frame
 * as the backend produces it. Nothing of the request or answer is logged.
 */
export function createInboundHttpHandler(options: InboundHttpOptions) {
  const { logger } = options;
  const maxRawBytes = ENVELOPE_OVERHEAD(options.maxRequestBytes);
  const limiter = new InboundLimiter({ ...DEFAULT_INBOUND_LIMITS, ...options.limits }, maxRawBytes);
  return async (stream: ByteStream, remote: EndpointId): Promise<void> => {
    const log = logger.child({ peer: remote.slice(0, 12) });
    let ticket: InboundTicket;
    try {
      ticket = limiter.admit(remote);
    } catch (error) {
      await refuse(stream, error, log);
      return;
    }
    try {
      await handleStream(stream, remote, ticket, log);
    } finally {
      ticket.release();
    }
  };

  async function handleStream(stream: ByteStream, remote: EndpointId, ticket: InboundTicket, log: Logger) {
    const controller = new AbortController();
    let raw: Uint8Array;
    try {
      raw = await readBoundedRequest(stream.source, {
        ticket,
        maxBytes: maxRawBytes,
        limits: limiter.limits,
        abort: (error) => stream.abort(error),
        tooLarge: () => new BodyTooLargeError(maxRawBytes),
      });
    } catch (error) {
      if (error instanceof UpstreamTimeoutError) {
        // The deadline already reset the stream: nothing can be written to it.
        log.warn({ err: describeError(error) }, 'inbound request refused');
        return;
      }
      await refuse(stream, error, log);
      return;
    }
    // A sender's unused warm stream, closed without a request: nothing to answer.
    if (raw.byteLength === 0) {
      await stream.closeWrite().catch(() => undefined);
      return;
    }

    if (raw[0] === E2E_MAGIC && options.e2e) {
      let sealer: ResponseSealer;
      let request: ApiRequest;
      try {
        const opened = openRequest(raw, {
          keyring: options.e2e.keyring,
          replayGuard: options.e2e.replayGuard,
          sender: remote,
          maxPlaintextBytes: options.maxRequestBytes,
        });
        sealer = new ResponseSealer(opened.session);
        request = parseRequest(opened.plaintext);
      } catch (error) {
        // Without a valid envelope there is no key to answer with: reset the stream.
        if (error instanceof E2EError) options.onE2eFailure?.(error.code);
        log.warn(
          { err: error instanceof E2EError ? error.code : describeError(error) },
          'encrypted request rejected',
        );
        stream.abort(asError(error));
        return;
      }
      await serve(request, stream, controller, log, {
        data: (chunks) => sealer.data(chunks),
        end: () => sealer.end(),
        fail: (message) => sealer.error(message),
      });
      return;
    }

    let request: ApiRequest;
    try {
      if (!options.acceptPlaintext) {
        throw new MeshError(
          'policy_refused',
          'encryption_required',
          'This host only accepts end-to-end encrypted requests',
        );
      }
      request = parseRequest(raw);
    } catch (error) {
      log.warn({ err: describeError(error) }, 'plaintext request rejected');
      const mapped =
        error instanceof HttpWireError ? new InvalidRequestError('Malformed HTTP request') : error;
      await writeResponse(stream, errorResponse(mapped), PLAIN_FRAMING).catch(() =>
        stream.abort(asError(error)),
      );
      return;
    }
    await serve(request, stream, controller, log, PLAIN_FRAMING);
  }

  /**
   * A refusal before any request was opened is a plaintext HTTP error, even to an encrypted
   * request (there is no key to answer with yet): the sender takes it as a refusal only.
   */
  async function refuse(stream: ByteStream, error: unknown, log: Logger): Promise<void> {
    log.warn({ err: describeError(error) }, 'inbound request refused');
    await writeResponse(stream, errorResponse(error), PLAIN_FRAMING).catch(() =>
      stream.abort(asError(error)),
    );
    // A sender that keeps writing into a refused stream does not keep it.
    setTimeout(() => stream.abort(asError(error)), REFUSED_STREAM_GRACE_MS).unref();
  }

  async function serve(
    request: ApiRequest,
    stream: ByteStream,
    controller: AbortController,
    log: Logger,
    framing: ResponseFraming,
  ): Promise<void> {
    const started = Date.now();
    let response: UpstreamResponse;
    try {
      // The host validates again, with the same rules: it does not trust the sending node.
      const parsed = parseOpenAiRequest(request.method, request.path, request.body);
      response = await options.router.dispatchLocal(parsed.body.model, parsed, controller.signal);
    } catch (error) {
      response = errorResponse(error);
    }
    try {
      await writeResponse(stream, response, framing);
      log.info(
        { path: request.path, status: response.status, ms: Date.now() - started },
        'served mesh request',
      );
    } catch (error) {
      controller.abort();
      log.warn({ path: request.path, err: describeError(error) }, 'mesh request ended early');
      const failure = framing.fail('host failed while answering');
      if (failure) await stream.write(failure).catch(() => undefined);
      stream.abort(asError(error));
    }
  }
}

/**
 * How response bytes go on the stream: as they are, or sealed frame by frame (SPEC §5). The E2E
 * header rides on the first frame (the sealer prepends it), not in a message of its own.
 */
interface ResponseFraming {
  /** One batch of the answer's bytes (chunks in order, `byteLength` in all) → bytes to write. */
  data(chunks: readonly Uint8Array[], byteLength: number): Uint8Array;
  end(): Uint8Array | undefined;
  fail(message: string): Uint8Array | undefined;
}

const PLAIN_FRAMING: ResponseFraming = {
  data: joinBatch,
  end: () => undefined,
  fail: () => undefined,
};

async function writeResponse(stream: ByteStream, response: UpstreamResponse, framing: ResponseFraming) {
  // Pieces of the answer that arrive together become one frame (one seal, one open), copied
  // into it once.
  const frames = new TurnBatcher((chunks, byteLength) => stream.write(framing.data(chunks, byteLength)));
  try {
    await frames.write(serializeResponseHead(response.status, response.headers));
    for await (const chunk of response.body) await frames.write(chunk);
    await frames.flush();
  } catch (error) {
    frames.discard(); // nothing may follow the caller's error frame
    throw error;
  }
  const end = framing.end();
  if (end) await stream.write(end);
  await stream.closeWrite();
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
