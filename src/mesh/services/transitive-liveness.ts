import type { Startable } from '@libp2p/interface';
import type { ByteStream, EndpointId, PeerRecord } from '../types.ts';
import { type MeshComponents, type MeshContext, short, timeoutSignal } from './context.ts';

/** How often hosts known only through gossip are checked through a connected member. */
export const TRANSITIVE_CHECK_MS = 10_000;
/** Hosts checked per round (rotating), and members asked per host (at once). */
const CHECKS_PER_ROUND = 16;
const CARRIERS_PER_CHECK = 8;
const CHECK_TIMEOUT_MS = 10_000;

export interface TransitiveLivenessInit {
  intervalMs: number;
  /** A PROTOCOL_HTTP stream to `target` carried by `via` (the mesh's openForwardedStream). */
  openForwarded: (via: EndpointId, target: EndpointId, signal: AbortSignal) => Promise<ByteStream>;
  isLost: (endpointId: EndpointId) => boolean;
  /** Leaves the peer out of routing until it reconnects or announces itself again. */
  markUnreachable: (endpointId: EndpointId, seq: bigint) => void;
}

/**
 * A host known only through gossip has no connection of ours whose closing would tell us it
 * crashed: only its silence would, after 2.5 heartbeats. So each round, every such host is
 * asked through the members we are connected to (the forwarding a request would take); when
 * none of them reaches it and one says so, it leaves routing and /v1/models at once. The
 * verdict is our own (what a request from here would find), and a newer announcement undoes it.
 */
export class TransitiveLivenessService implements Startable {
  private readonly context: MeshContext;
  private readonly init: TransitiveLivenessInit;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private offset = 0;

  constructor(context: MeshContext, init: TransitiveLivenessInit) {
    this.context = context;
    this.init = init;
  }

  start(): void {
    if (this.init.intervalMs <= 0) return;
    this.timer = setInterval(() => void this.round(), this.init.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round of checks (also for tests). */
  async round(): Promise<void> {
    if (this.running || this.context.stopSignal.aborted) return;
    this.running = true;
    try {
      const peers = this.context.table.list();
      const carriers = peers.filter((p) => p.connected);
      const targets = peers.filter((p) => !p.connected && hostsModels(p) && !this.init.isLost(p.endpointId));
      if (carriers.length === 0 || targets.length === 0) return;
      this.offset = (this.offset + CHECKS_PER_ROUND) % Math.max(targets.length, CHECKS_PER_ROUND);
      const batch = [...targets.slice(this.offset), ...targets.slice(0, this.offset)].slice(
        0,
        CHECKS_PER_ROUND,
      );
      await Promise.all(batch.map((target) => this.check(target, carriers)));
    } finally {
      this.running = false;
    }
  }

  private async check(target: PeerRecord, carriers: PeerRecord[]): Promise<void> {
    // Asked at once, as a request's forwarding would try them: one that reaches it is enough.
    const verdicts = await Promise.all(
      carriers
        .slice(0, CARRIERS_PER_CHECK)
        .map((via) =>
          this.reaches(
            via.endpointId,
            target.endpointId,
            timeoutSignal(this.context, CHECK_TIMEOUT_MS),
          ).catch(() => undefined),
        ),
    );
    if (verdicts.includes(true) || !verdicts.includes(false)) return;
    const now = this.context.table.get(target.endpointId);
    // Only the announcement checked, still unconnected: a newer one is a sign of life.
    if (now === undefined || now.connected || now.seq !== target.seq) return;
    this.context.log.info(
      { peer: short(target.endpointId) },
      'host known only through gossip is unreachable through every member asked, left out of routing',
    );
    this.init.markUnreachable(target.endpointId, target.seq);
  }

  /**
   * Whether `target` ends an empty HTTP request forwarded by `via` quietly (as a host ends an
   * unused warm stream); false when `via` reset it; undefined when `via` could not be asked.
   */
  private async reaches(
    via: EndpointId,
    target: EndpointId,
    signal: AbortSignal,
  ): Promise<boolean | undefined> {
    const stream = await this.init.openForwarded(via, target, signal).catch(() => undefined);
    if (stream === undefined) return undefined;
    const onAbort = () => stream.abort(new Error('reachability check timed out'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await stream.closeWrite();
      for await (const _ of stream.source) {
        // A host never answers an empty request: whatever comes is drained.
      }
      return true;
    } catch {
      return signal.aborted ? undefined : false;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

function hostsModels(peer: PeerRecord): boolean {
  const a = peer.announcement;
  return a.hostedModels.length > 0 || a.servedModelRuntime.length > 0;
}

export function meshTransitiveLiveness(
  context: MeshContext,
  init: TransitiveLivenessInit,
): (components: MeshComponents) => TransitiveLivenessService {
  return () => new TransitiveLivenessService(context, init);
}
