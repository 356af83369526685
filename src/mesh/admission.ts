import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { Stream } from '@libp2p/interface';
import { ConfigError } from '../errors.ts';
import {
  type AdmitRequest,
  AdmitRequestSchema,
  type AdmitResponse,
  AdmitResponseSchema,
  type OwnerSigned,
} from '../proto/gen/mesh_pb.js';
import { frameStream } from './frames.ts';
import { endpointIdToBytes } from './identity.ts';
import type { MeshMembership } from './membership.ts';
import { KeyedRateLimit } from './rate-limit.ts';
import type { EndpointId } from './types.ts';

/** `/mesh-llm/admit/1.0.0`: a joiner exchanges an owner-signed invite for a certificate. */
export const PROTOCOL_ADMIT = '/mesh-llm/admit/1.0.0';

const MAX_ADMIT_BYTES = 8 * 1024;
const ADMIT_TIMEOUT_MS = 10_000;

export interface AdmissionDeps {
  membership: MeshMembership;
  self: EndpointId;
  clock: () => number;
  isMember(endpointId: EndpointId): boolean;
  /** The node holding the owner key, as announced (a hint: its answer is checked). */
  ownerNode(): EndpointId | undefined;
  /** A stream to a member (for forwarding a request to the owner node). */
  openStream(endpointId: EndpointId, protocol: string, signal: AbortSignal): Promise<Stream>;
}

/**
 * Serves and sends admission requests. Strangers may reach it (that is its purpose), so each
 * peer gets a few requests per minute, one small frame each, under a deadline.
 */
export class Admission {
  private readonly deps: AdmissionDeps;
  private readonly perPeer: KeyedRateLimit;

  constructor(deps: AdmissionDeps) {
    this.deps = deps;
    this.perPeer = new KeyedRateLimit({ burst: 4, perSecond: 1 / 15, maxKeys: 1024, clock: deps.clock });
  }

  /** Answers one request on `stream` from the authenticated peer `remote`. */
  async serve(stream: Stream, remote: EndpointId): Promise<void> {
    const signal = AbortSignal.timeout(ADMIT_TIMEOUT_MS);
    try {
      if (!this.perPeer.take(remote)) throw new Error('too many admission requests');
      const lp = frameStream(stream, MAX_ADMIT_BYTES);
      const request = fromBinary(AdmitRequestSchema, (await lp.read({ signal })).subarray());
      const response = this.deps.membership.isOwner
        ? this.deps.membership.admit(request, remote, (id) => this.deps.isMember(id), this.deps.clock())
        : await this.forward(request, signal);
      await lp.write(toBinary(AdmitResponseSchema, response), { signal });
      await stream.close({ signal });
    } catch (error) {
      stream.abort(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Asks the peer at the other end of `stream` to admit this node with `invite`; throws why not. */
  async request(stream: Stream, invite: OwnerSigned): Promise<void> {
    const request = create(AdmitRequestSchema, { invite, endpointId: endpointIdToBytes(this.deps.self) });
    const signal = AbortSignal.timeout(ADMIT_TIMEOUT_MS);
    let reply: Uint8Array;
    try {
      reply = await exchange(stream, toBinary(AdmitRequestSchema, request), signal);
    } catch (error) {
      if (signal.aborted) throw new ConfigError('the mesh did not answer the invite in time');
      throw error;
    }
    let response: AdmitResponse;
    try {
      response = fromBinary(AdmitResponseSchema, reply);
    } catch {
      throw new ConfigError('the mesh answered the invite with something unreadable');
    }
    if (response.error !== '') throw new ConfigError(`the mesh owner refused the invite: ${response.error}`);
    if (!(await this.deps.membership.accept(response, this.deps.self))) {
      throw new ConfigError('the mesh answered the invite with a certificate its owner did not sign');
    }
  }

  /** A member passes a joiner's request to the owner node and its answer back. */
  private async forward(request: AdmitRequest, signal: AbortSignal): Promise<AdmitResponse> {
    const owner = this.deps.ownerNode();
    if (owner === undefined || owner === this.deps.self) {
      return create(AdmitResponseSchema, {
        error: 'the mesh owner node is not reachable now; try again later',
      });
    }
    const upstream = await this.deps.openStream(owner, PROTOCOL_ADMIT, signal);
    return fromBinary(
      AdmitResponseSchema,
      await exchange(upstream, toBinary(AdmitRequestSchema, request), signal),
    );
  }
}

/**
 * Writes one frame, half-closes, and reads the one frame answering it, all before `signal`.
 * On any failure the stream is reset, so a stalled peer holds nothing open.
 */
async function exchange(stream: Stream, payload: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
  const lp = frameStream(stream);
  try {
    await lp.write(payload, { signal });
    await stream.close({ signal });
    return (await lp.read({ signal })).subarray();
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
}
