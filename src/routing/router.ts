import type { InferenceBackend } from '../backends/types.ts';
import {
  describeError,
  MeshError,
  ModelNotFoundError,
  PolicyRefusedError,
  UpstreamError,
} from '../errors.ts';
import { type HeaderMap, readAll, type UpstreamResponse } from '../http/exchange.ts';
import type { Logger } from '../log.ts';
import type { EndpointId, MeshService, PeerRecord } from '../mesh/types.ts';
import { type OpenAiRequest, serializeOpenAiRequest } from '../openai/request.ts';
import type { RemoteTransport, StreamPath } from './remote-transport.ts';

/** A security rule that may refuse a remote host (SPEC §5 rules, §6.5). */
export interface HostGate {
  /** Error code when this gate refused every candidate, e.g. no_attested_host. */
  readonly code: string;
  /** A readable reason when `peer` must not receive this request, else undefined. */
  refuse(peer: PeerRecord, inferenceKey: Uint8Array | undefined): string | undefined;
}

/** What the router needs to know about remote hosts' security, supplied by the node. */
export interface HostSecurity {
  /** The peer's advertised inference key when valid, else undefined (plaintext only). */
  inferenceKey(peer: PeerRecord): Uint8Array | undefined;
  /** Higher sorts first (e.g. attested hosts before unattested ones). */
  preference(peer: PeerRecord): number;
}

export interface ModelListing {
  id: string;
  /** Endpoint ids of remote hosts serving it ('local' when served here). */
  hosts: string[];
  contextLength?: number;
}

export interface RouteInfo {
  host: EndpointId | 'local';
  path: StreamPath | 'local';
  encrypted: boolean;
  attempts: number;
}

export interface RoutedResponse extends UpstreamResponse {
  route: RouteInfo;
}

export interface RouterOptions {
  backends: InferenceBackend[];
  mesh: Pick<MeshService, 'peers'>;
  transport: Pick<RemoteTransport, 'send'>;
  security: HostSecurity;
  gates: HostGate[];
  logger: Logger;
}

type Candidate = { kind: 'local'; backend: InferenceBackend } | { kind: 'remote'; peer: PeerRecord };

/** Statuses that mean "this host could not do it, another might". */
const RETRYABLE_STATUS = new Set([502, 503, 504]);

/**
 * Chooses where a request runs: the local backend when it serves the model, else remote
 * hosts in preference order, skipping any a security gate refuses. A host that fails before
 * the first byte reached the client is replaced by the next one.
 */
export class Router {
  readonly #options: RouterOptions;

  constructor(options: RouterOptions) {
    this.#options = options;
  }

  listModels(): ModelListing[] {
    const models = new Map<string, ModelListing>();
    for (const backend of this.#options.backends) {
      for (const model of backend.models()) {
        models.set(model.name, { id: model.name, hosts: ['local'], contextLength: model.contextLength });
      }
    }
    for (const peer of this.#options.mesh.peers()) {
      for (const name of hostedModels(peer)) {
        const entry = models.get(name) ?? { id: name, hosts: [] };
        entry.hosts.push(peer.endpointId);
        entry.contextLength ??= peer.announcement.servedModelRuntime.find(
          (m) => m.modelName === name,
        )?.contextLength;
        models.set(name, entry);
      }
    }
    return [...models.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Serve from local backends only (requests arriving from the mesh are never forwarded on). */
  async dispatchLocal(model: string, request: OpenAiRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    const backend = this.#localBackend(model);
    if (!backend) throw new ModelNotFoundError(model);
    return backend.handle(request, signal);
  }

  async dispatch(
    model: string,
    request: OpenAiRequest,
    options: { stream: boolean; signal: AbortSignal },
  ): Promise<RoutedResponse> {
    const { candidates, refusals } = this.#candidates(model);
    if (candidates.length === 0) {
      if (refusals.length === 0) throw new ModelNotFoundError(model);
      const code = refusals[0]!.code;
      const why = refusals.map((r) => `${r.host.slice(0, 12)}: ${r.reason}`).join('; ');
      throw new PolicyRefusedError(
        code,
        `No host for '${model}' satisfies this node's security policy (${why})`,
      );
    }
    let lastFailure: unknown;
    let lastRetryable: RoutedResponse | undefined;
    for (const [index, candidate] of candidates.entries()) {
      if (options.signal.aborted) break;
      const attempts = index + 1;
      try {
        const response = await this.#attempt(candidate, request, options, attempts);
        if (RETRYABLE_STATUS.has(response.status) && index < candidates.length - 1) {
          lastRetryable = response;
          this.#options.logger.warn(
            { host: response.route.host, status: response.status },
            'host answered with a retryable status, trying the next one',
          );
          continue;
        }
        return response;
      } catch (error) {
        lastFailure = error;
        this.#options.logger.warn(
          {
            host: candidate.kind === 'local' ? 'local' : candidate.peer.endpointId,
            err: describeError(error),
          },
          'host attempt failed before the first byte, trying the next one',
        );
      }
    }
    if (lastRetryable) return lastRetryable;
    if (options.signal.aborted) throw new UpstreamError('request cancelled by the client', 'cancelled');
    if (lastFailure instanceof MeshError) throw lastFailure;
    throw new UpstreamError(`every host for '${model}' failed: ${describeError(lastFailure)}`);
  }

  #localBackend(model: string): InferenceBackend | undefined {
    return this.#options.backends.find((b) => b.models().some((m) => m.name === model && m.ready));
  }

  #candidates(model: string) {
    const candidates: Candidate[] = [];
    const refusals: { host: string; code: string; reason: string }[] = [];
    const local = this.#localBackend(model);
    if (local) candidates.push({ kind: 'local', backend: local });
    const { security } = this.#options;
    const remote = this.#options.mesh
      .peers()
      .filter((peer) => hostedModels(peer).includes(model))
      .map((peer) => ({
        peer,
        preference: security.preference(peer),
        rtt: peer.rttMs ?? Number.MAX_SAFE_INTEGER,
      }))
      .sort(
        (a, b) =>
          b.preference - a.preference || Number(b.peer.connected) - Number(a.peer.connected) || a.rtt - b.rtt,
      );
    for (const { peer } of remote) {
      const refusal = this.refusal(peer);
      if (refusal) refusals.push({ host: peer.endpointId, ...refusal });
      else candidates.push({ kind: 'remote', peer });
    }
    return { candidates, refusals };
  }

  /** Why this node's security policy would refuse to send requests to `peer`, if it would. */
  refusal(peer: PeerRecord): { code: string; reason: string } | undefined {
    const key = this.#options.security.inferenceKey(peer);
    for (const gate of this.#options.gates) {
      const reason = gate.refuse(peer, key);
      if (reason) return { code: gate.code, reason };
    }
    return undefined;
  }

  async #attempt(
    candidate: Candidate,
    request: OpenAiRequest,
    options: { stream: boolean; signal: AbortSignal },
    attempts: number,
  ): Promise<RoutedResponse> {
    let response: UpstreamResponse;
    let route: RouteInfo;
    if (candidate.kind === 'local') {
      response = await candidate.backend.handle(request, options.signal);
      route = { host: 'local', path: 'local', encrypted: false, attempts };
    } else {
      const inferenceKey = this.#options.security.inferenceKey(candidate.peer);
      const remote = await this.#options.transport.send(
        candidate.peer.endpointId,
        serializeOpenAiRequest(request),
        { inferenceKey, signal: options.signal, stream: options.stream },
      );
      response = remote;
      route = { host: candidate.peer.endpointId, path: remote.path, encrypted: remote.encrypted, attempts };
    }
    // Commit only once the first body byte is in hand (a non-streamed answer: all of it), so a
    // host that dies before then is an attempt that failed, not a broken answer.
    const body = options.stream ? await prefetchFirst(response.body) : await bufferAll(response.body);
    return { status: response.status, headers: withRouteHeaders(response.headers, route), body, route };
  }
}

export function hostedModels(peer: PeerRecord): string[] {
  const a = peer.announcement;
  const ready = a.servedModelRuntime.filter((m) => m.ready).map((m) => m.modelName);
  return [...new Set([...a.hostedModels, ...ready])];
}

function withRouteHeaders(headers: HeaderMap, route: RouteInfo): HeaderMap {
  return {
    ...headers,
    'x-mesh-host': route.host,
    'x-mesh-path': route.path,
    'x-mesh-e2e': route.host === 'local' ? 'local' : route.encrypted ? 'encrypted' : 'plaintext',
  };
}

async function prefetchFirst(body: AsyncIterable<Uint8Array>): Promise<AsyncIterable<Uint8Array>> {
  const iterator = body[Symbol.asyncIterator]();
  const first = await iterator.next();
  return (async function* () {
    try {
      if (first.done) return;
      yield first.value;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      await iterator.return?.();
    }
  })();
}

async function bufferAll(body: AsyncIterable<Uint8Array>): Promise<AsyncIterable<Uint8Array>> {
  const whole = await readAll(body);
  return (async function* () {
    if (whole.byteLength > 0) yield whole;
  })();
}
