import type { InferenceBackend } from '../backends/types.ts';
import {
  AllHostsBusyError,
  describeError,
  MeshError,
  ModelNotFoundError,
  NoCapacityError,
  PolicyRefusedError,
  UpstreamError,
} from '../errors.ts';
import { type HeaderMap, readAll, type UpstreamResponse } from '../http/exchange.ts';
import type { Logger } from '../log.ts';
import type { EndpointId, MeshService, PeerRecord } from '../mesh/types.ts';
import { type OpenAiRequest, serializeOpenAiRequest } from '../openai/request.ts';
import { AffinityTable, conversationKeys } from './affinity.ts';
import { CapacityQueue } from './capacity-queue.ts';
import { type HostView, orderHosts } from './host-choice.ts';
import { LoadBoard } from './load-board.ts';
import { LocalLoad } from './local-load.ts';
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
  /** Remote hosts' load as this node sees it (fed by load reports); default: own counts only. */
  load?: LoadBoard;
  /** Bounded wait when every host is full. */
  queue?: CapacityQueue;
  affinity?: AffinityTable;
  /** How long a host that answered no_capacity is left out (or its Retry-After, up to 30 s). */
  passOverMs?: number;
  random?: () => number;
}

export interface DispatchOptions {
  stream: boolean;
  signal: AbortSignal;
}

type Candidate = { kind: 'local'; backend: InferenceBackend } | { kind: 'remote'; peer: PeerRecord };

/** A place taken on a host: released when the answer ends (`served`: it ended well). */
type Ticket = (served: boolean) => void;

interface Placement {
  view: HostView<Candidate>;
  ticket: Ticket;
}

/** Statuses that mean "this host could not do it, another might". */
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);
/** Of those, the ones meaning "full right now": the host is passed over for a while. */
const NO_CAPACITY_STATUS = new Set([429, 503]);
const MAX_PASS_OVER_MS = 30_000;

/** Per model: every host, its slots and load as this node sees them (GET /api/status). */
export interface ModelPool {
  name: string;
  /** Requests waiting on this node for a free slot anywhere. */
  waiting: number;
  hosts: {
    id: EndpointId | 'local';
    slots: number | null;
    inFlight: number;
    queued: number;
    servedPerMinute: number | null;
  }[];
}

/**
 * Chooses where a request runs among the hosts that pass the security gates, local backend
 * included: by estimated wait (host-choice.ts), the conversation's previous host when it has
 * room, waiting in a bounded queue when every host is full. A host that fails before the first
 * byte reached the client, or answers no_capacity, is replaced by the next one.
 */
export class Router {
  readonly #options: RouterOptions;
  readonly localLoad: LocalLoad;
  readonly load: LoadBoard;
  readonly queue: CapacityQueue;
  readonly affinity: AffinityTable;

  constructor(options: RouterOptions) {
    this.#options = options;
    this.localLoad = new LocalLoad({
      models: () =>
        options.backends.flatMap((b) =>
          b
            .models()
            .filter((m) => m.ready)
            .map((m) => ({ name: m.name, slots: m.slots ?? 1 })),
        ),
    });
    this.load = options.load ?? new LoadBoard();
    this.queue = options.queue ?? new CapacityQueue();
    this.affinity = options.affinity ?? new AffinityTable();
    // Any slot freeing anywhere may let the head of the queue go.
    this.localLoad.onChange(() => this.queue.notify());
    this.load.onChange(() => this.queue.notify());
  }

  /** Hosts, slots and load per model, for status pages. */
  pools(): ModelPool[] {
    const pools = new Map<string, ModelPool>();
    const pool = (name: string) => {
      let entry = pools.get(name);
      if (entry === undefined) {
        entry = { name, waiting: this.queue.waitingFor(name), hosts: [] };
        pools.set(name, entry);
      }
      return entry;
    };
    for (const m of this.localLoad.snapshot()) {
      pool(m.modelName).hosts.push({
        id: 'local',
        slots: m.slots,
        inFlight: m.inFlight,
        queued: m.queued,
        servedPerMinute: m.servedLastMinute,
      });
    }
    for (const peer of this.#options.mesh.peers()) {
      for (const name of hostedModels(peer)) {
        const estimate = this.load.estimate(peer.endpointId, name, advertisedSlots(peer, name));
        const slots = estimate.slots ?? null;
        pool(name).hosts.push({
          id: peer.endpointId,
          slots,
          inFlight: slots === null ? estimate.load : Math.min(estimate.load, slots),
          queued: slots === null ? 0 : Math.max(0, estimate.load - slots),
          servedPerMinute: estimate.servedLastMinute ?? null,
        });
      }
    }
    return [...pools.values()].sort((a, b) => a.name.localeCompare(b.name));
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
    const end = this.localLoad.begin(model);
    try {
      return settleOnEnd(await backend.handle(request, signal), end, signal);
    } catch (error) {
      end(false);
      throw error;
    }
  }

  async dispatch(model: string, request: OpenAiRequest, options: DispatchOptions): Promise<RoutedResponse> {
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
    const keys =
      request.path === '/v1/chat/completions' ? conversationKeys(model, request.body.messages) : undefined;
    const affinity = keys ? this.affinity.lookup(keys) : undefined;
    // Each attempt is placed afresh (free slot first, else wait): a host that failed or was
    // full is not tried again for this request.
    const tried = new Set<string>();
    let lastFailure: unknown;
    let lastRetryable: RoutedResponse | undefined;
    for (let attempts = 1; !options.signal.aborted; attempts++) {
      let placed: Placement | 'exhausted';
      try {
        placed = await this.queue.acquire(model, () => this.#place(model, affinity, tried), options.signal);
      } catch (error) {
        // Out of waiting after a host already answered: that answer says more than a 429.
        if (lastRetryable && error instanceof AllHostsBusyError) return lastRetryable;
        throw error;
      }
      if (placed === 'exhausted') break;
      const { view, ticket } = placed;
      tried.add(view.id);
      let response: RoutedResponse;
      try {
        response = await this.#attempt(view.host, request, options, attempts);
      } catch (error) {
        ticket(false);
        lastFailure = error;
        this.#options.logger.warn(
          { host: view.id, err: describeError(error) },
          'host attempt failed before the first byte, trying the next one',
        );
        continue;
      }
      if (NO_CAPACITY_STATUS.has(response.status) && !view.local) {
        this.load.passOver(view.id, model, this.#passOverMs(response.headers['retry-after']));
      }
      if (RETRYABLE_STATUS.has(response.status)) {
        ticket(false);
        if (lastRetryable) await discard(lastRetryable.body);
        lastRetryable = response;
        this.#options.logger.warn(
          { host: response.route.host, status: response.status },
          'host answered with a retryable status, trying the next one',
        );
        continue;
      }
      if (lastRetryable) await discard(lastRetryable.body);
      if (keys && response.status === 200) this.affinity.remember(keys, view.id);
      return settleOnEnd(response, ticket, options.signal);
    }
    if (lastRetryable) return lastRetryable;
    if (options.signal.aborted) throw new UpstreamError('request cancelled by the client', 'cancelled');
    if (lastFailure instanceof MeshError) throw lastFailure;
    throw new UpstreamError(`every host for '${model}' failed: ${describeError(lastFailure)}`);
  }

  #localBackend(model: string): InferenceBackend | undefined {
    return this.#options.backends.find((b) => b.models().some((m) => m.name === model && m.ready));
  }

  /**
   * The host to try next, with a place taken on it; undefined when every host not yet tried is
   * full (the request then waits in the queue); 'exhausted' when every host was tried. Runs
   * synchronously, so places taken one after another see each other.
   */
  #place(
    model: string,
    affinity: string | undefined,
    tried: ReadonlySet<string>,
  ): Placement | 'exhausted' | undefined {
    const { candidates } = this.#candidates(model);
    const views = candidates
      .map((candidate) => this.#view(candidate, model))
      .filter((view) => !tried.has(view.id));
    if (views.length === 0) {
      if (tried.size > 0) return 'exhausted';
      throw new NoCapacityError(`Every host of '${model}' has left the mesh`);
    }
    const { order, free } = orderHosts(views, { affinity, random: this.#options.random });
    if (!free) return undefined;
    const view = order[0]!;
    return { view, ticket: this.#take(view, model) };
  }

  #view(candidate: Candidate, model: string): HostView<Candidate> {
    if (candidate.kind === 'local') {
      return {
        host: candidate,
        id: 'local',
        local: true,
        slots: this.localLoad.slots(model),
        load: this.localLoad.outstanding(model),
        rttMs: 0,
        preference: 0,
        passedOver: false,
      };
    }
    const { peer } = candidate;
    const estimate = this.load.estimate(peer.endpointId, model, advertisedSlots(peer, model));
    return {
      host: candidate,
      id: peer.endpointId,
      local: false,
      slots: estimate.slots,
      load: estimate.load,
      // A peer known only through gossip costs at least a relay or forwarding hop.
      rttMs: (peer.rttMs ?? 1_000) + (peer.connected ? 0 : 1_000),
      preference: this.#options.security.preference(peer),
      passedOver: this.load.passedOver(peer.endpointId, model),
    };
  }

  /** Counts a request on a host until its answer ends. */
  #take(view: HostView<Candidate>, model: string): Ticket {
    if (view.local) return this.localLoad.begin(model);
    const end = this.load.begin(view.id, model);
    return () => end();
  }

  #passOverMs(retryAfter: string | undefined): number {
    const seconds = Number(retryAfter);
    if (retryAfter !== undefined && Number.isFinite(seconds) && seconds > 0) {
      return Math.min(MAX_PASS_OVER_MS, seconds * 1000);
    }
    return this.#options.passOverMs ?? 2_000;
  }

  #candidates(model: string) {
    const candidates: Candidate[] = [];
    const refusals: { host: string; code: string; reason: string }[] = [];
    const local = this.#localBackend(model);
    if (local) candidates.push({ kind: 'local', backend: local });
    const remote = this.#options.mesh.peers().filter((peer) => hostedModels(peer).includes(model));
    for (const peer of remote) {
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
    options: DispatchOptions,
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

/** Slots the peer's announcement states for `model` (field 60), if any. */
export function advertisedSlots(peer: PeerRecord, model: string): number | undefined {
  const slots = peer.announcement.modelCapacity.find((c) => c.modelName === model)?.slots;
  return slots !== undefined && slots > 0 ? slots : undefined;
}

/**
 * Calls `end` exactly once: when the body is read to its end or given up by its reader (served
 * if the status was 2xx), when it fails, or when `signal` aborts (a reader that never started).
 */
function settleOnEnd<R extends UpstreamResponse>(response: R, end: Ticket, signal?: AbortSignal): R {
  const ok = response.status >= 200 && response.status < 300;
  const source = response.body;
  let settled = false;
  const onAbort = () => settle(false);
  const settle = (served: boolean) => {
    if (settled) return;
    settled = true;
    signal?.removeEventListener('abort', onAbort);
    end(served);
  };
  if (signal?.aborted) settle(false);
  else signal?.addEventListener('abort', onAbort, { once: true });
  let iterator: AsyncIterator<Uint8Array> | undefined;
  const body: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      iterator ??= source[Symbol.asyncIterator]();
      const inner = iterator;
      return {
        async next() {
          try {
            const result = await inner.next();
            if (result.done) settle(ok);
            return result;
          } catch (error) {
            settle(false);
            throw error;
          }
        },
        async return(value?: unknown) {
          settle(ok);
          return (await inner.return?.(value)) ?? { done: true, value: undefined };
        },
      };
    },
  };
  return { ...response, body };
}

async function discard(body: AsyncIterable<Uint8Array>): Promise<void> {
  await body[Symbol.asyncIterator]().return?.(undefined);
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
