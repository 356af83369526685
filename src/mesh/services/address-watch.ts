import type { Startable } from '@libp2p/interface';
import { listen, type MeshComponents, type MeshContext } from './context.ts';

/** Address changes within this long of each other are announced once. */
const SETTLE_MS = 100;

export interface AddressWatchInit {
  /** The addresses this node advertises now. */
  addresses: () => string[];
  /** Whether the node runs and is not stopping: only then are changes announced. */
  active: () => boolean;
  /** Re-signs the announcement (with the current addresses) and gossips it. */
  reannounce: () => Promise<void>;
}

/**
 * Announces this node again when the addresses it advertises change (a listener, a relay
 * reservation, a confirmed public address), so members dial what is current.
 */
export class AddressWatchService implements Startable {
  private readonly context: MeshContext;
  private readonly init: AddressWatchInit;
  private readonly components: MeshComponents;
  private timer: NodeJS.Timeout | undefined;
  private detach: (() => void) | undefined;

  constructor(context: MeshContext, init: AddressWatchInit, components: MeshComponents) {
    this.context = context;
    this.init = init;
    this.components = components;
  }

  start(): void {
    this.detach = listen(this.components, this.context.log, 'self:peer:update', () => this.schedule());
  }

  stop(): void {
    this.detach?.();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (!this.init.active() || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.init.active()) return;
      const current = this.context.local.announcement?.listenAddrs ?? [];
      const now = this.init.addresses();
      if (now.length === current.length && now.every((a, i) => a === current[i])) return;
      this.context.log.info({ addrs: now.length }, 'listen addresses changed');
      void this.init.reannounce();
    }, SETTLE_MS);
    this.timer.unref();
  }
}

export function meshAddressWatch(
  context: MeshContext,
  init: AddressWatchInit,
): (components: MeshComponents) => AddressWatchService {
  return (components) => new AddressWatchService(context, init, components);
}
