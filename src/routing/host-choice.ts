/**
 * Which host runs a request, from what is known of each (pure, so it is tested on its own).
 *
 * Hosts with a free slot come first. Among them: the conversation's previous host (its prompt
 * cache holds the prefix), else the local backend, else the better of two picked at random
 * ("power of two choices": close to the least loaded host without every sender herding onto
 * the same one between load reports), drawn from the free hosts of the highest security
 * preference (under --require-attested-hosts: hardware-rooted first; a preferred host is filled first,
 * the others take what it has no room for). Better = lower utilisation (running + queued + this
 * request, over slots), then lower round-trip time. The
 * other hosts follow in that order as failover, hosts passed over after a no_capacity answer
 * last.
 */

export interface HostView<H> {
  /** What the caller needs to send there (a peer record, a backend). */
  host: H;
  id: string;
  local: boolean;
  /** Parallel slots; undefined when the host states none (it is then never counted full). */
  slots: number | undefined;
  /** Requests running or waiting there, as far as this node knows. */
  load: number;
  rttMs: number;
  preference: number;
  /** It answered no_capacity a moment ago. */
  passedOver: boolean;
}

export interface HostOrder<H> {
  order: HostView<H>[];
  /** The first host has a free slot (or states no capacity at all). */
  free: boolean;
}

export function hasFreeSlot(view: HostView<unknown>): boolean {
  return !view.passedOver && (view.slots === undefined || view.load < view.slots);
}

export function utilisation(view: HostView<unknown>): number {
  return (view.load + 1) / Math.max(1, view.slots ?? 1);
}

function compare(a: HostView<unknown>, b: HostView<unknown>): number {
  return (
    Number(a.passedOver) - Number(b.passedOver) ||
    Number(hasFreeSlot(b)) - Number(hasFreeSlot(a)) ||
    b.preference - a.preference ||
    utilisation(a) - utilisation(b) ||
    a.rttMs - b.rttMs
  );
}

export function orderHosts<H>(
  views: readonly HostView<H>[],
  options: { affinity?: string; random?: () => number } = {},
): HostOrder<H> {
  const random = options.random ?? Math.random;
  const sorted = [...views].sort(compare);
  const free = sorted.filter(hasFreeSlot);
  if (free.length === 0) return { order: sorted, free: false };
  const first =
    free.find((v) => v.id === options.affinity) ??
    free.find((v) => v.local) ??
    twoChoices(
      free.filter((v) => v.preference === free[0]!.preference),
      random,
    );
  return { order: [first, ...sorted.filter((v) => v !== first)], free: true };
}

function twoChoices<H>(views: HostView<H>[], random: () => number): HostView<H> {
  if (views.length === 1) return views[0]!;
  const i = Math.floor(random() * views.length);
  let j = Math.floor(random() * (views.length - 1));
  if (j >= i) j++;
  const [a, b] = [views[i]!, views[j]!];
  return compare(a, b) <= 0 ? a : b;
}
