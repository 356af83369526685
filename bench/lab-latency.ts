/**
 * Latency across real network boundaries (issue #14), from the network-namespace lab
 * (test/lab/topology.ts): a client in home B (behind NAT) asks
 *   - a host behind a symmetric NAT (home C): relayed for good;
 *   - a host behind a cone NAT (home A): relayed at first, direct once the hole punch upgrades
 *     the link (the relayed row times every request until the first direct one);
 *   - a host with a public address: direct from the first request.
 * Each row: the first request (dials included), then the steady p50/p99 of sequential small
 * non-streamed chat completions (fake backend, 2 tokens) on the path the row names. Needs root
 * (network namespaces); prints why and exits 0 otherwise.
 *
 *   node bench/lab-latency.ts [--quick]
 */
import {
  HOME_MODEL,
  type InternetMesh,
  PUB_MODEL,
  SLOW_MODEL,
  startInternetMesh,
} from '../test/lab/internet-mesh.ts';
import { type ChatResult, chat, type LabNode, waitFor } from '../test/lab/lab-node.ts';
import { labUnavailableReason } from '../test/lab/netns.ts';
import { Lab } from '../test/lab/topology.ts';
import { percentile, printTable } from './lib/load.ts';

const quick = process.argv.includes('--quick');
const COUNT = quick ? 30 : 200;
const UPGRADE_WAIT_MS = 30_000;

/** `count` sequential requests that took `path`; NaN figures when the path was never taken. */
async function steady(client: LabNode, model: string, path: string, count: number) {
  const times: number[] = [];
  const other = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const result = await chat(client, model, 10_000);
    if (result.status === 200 && result.path === path) times.push(result.ms);
    else {
      const what = result.status === 200 ? `${result.path}` : `status ${result.status}`;
      other.set(what, (other.get(what) ?? 0) + 1);
    }
  }
  return { p50: percentile(times, 50), p99: percentile(times, 99), other };
}

function cell(first: ChatResult | undefined): string {
  if (first === undefined) return '—';
  return first.status === 200 ? `${first.ms.toFixed(0)} (${first.path})` : `failed ${first.status}`;
}

async function firstRequest(client: LabNode, model: string): Promise<ChatResult> {
  await waitFor(`the client to list ${model}`, 60_000, async () => (await client.models()).includes(model));
  return chat(client, model, 60_000);
}

async function main(): Promise<void> {
  const unavailable = await labUnavailableReason();
  if (unavailable) {
    process.stdout.write(`\nlab latency: ${unavailable}\n`);
    return;
  }
  const lab = await Lab.create({ internet: true });
  let mesh: InternetMesh | undefined;
  try {
    mesh = await startInternetMesh(lab, { hostCTokenDelayMs: 0 });
    const { clientB } = mesh;
    const rows: (string | number)[][] = [];
    const row = async (
      name: string,
      model: string,
      first: ChatResult | undefined,
      path: string,
      note = '',
    ) => {
      const s = await steady(clientB, model, path, COUNT);
      const stray = [...s.other].map(([what, n]) => `${n} of ${COUNT}: ${what}`).join(', ');
      rows.push([name, cell(first), path, s.p50, s.p99, [note, stray].filter(Boolean).join('; ')]);
    };

    await row(
      'home B → home C (symmetric NAT)',
      SLOW_MODEL,
      await firstRequest(clientB, SLOW_MODEL),
      'relay',
    );
    // Home A: relayed at first; every request until the first direct one is timed on the relay.
    const firstA = await firstRequest(clientB, HOME_MODEL);
    const relayed: number[] = firstA.path === 'relay' ? [firstA.ms] : [];
    let firstDirect: ChatResult | undefined = firstA.path === 'direct' ? firstA : undefined;
    const upgradeStart = performance.now();
    while (firstDirect === undefined && performance.now() - upgradeStart < UPGRADE_WAIT_MS) {
      const result = await chat(clientB, HOME_MODEL, 10_000);
      if (result.status === 200 && result.path === 'direct') firstDirect = result;
      else if (result.status === 200 && result.path === 'relay') relayed.push(result.ms);
    }
    const upgradeMs = performance.now() - upgradeStart;
    // The punch runs when two members connect, so the upgrade is often done before any request.
    if (relayed.length > 0) {
      rows.push([
        'home B → home A (cone NAT), through the relay',
        cell(firstA),
        'relay',
        percentile(relayed, 50),
        percentile(relayed, 99),
        `${relayed.length} relayed requests before the upgrade`,
      ]);
    }
    const upgradeNote =
      firstA.path === 'direct'
        ? 'direct from the first request: the hole punch ran when the members connected'
        : firstDirect
          ? `first direct request ${(upgradeMs / 1000).toFixed(1)} s after the first relayed one`
          : `never direct within ${UPGRADE_WAIT_MS / 1000} s`;
    await row(
      'home B → home A (cone NAT), after the hole punch',
      HOME_MODEL,
      firstDirect,
      'direct',
      upgradeNote,
    );
    await row('home B → public host', PUB_MODEL, await firstRequest(clientB, PUB_MODEL), 'direct');
    printTable(
      `Lab latency (network namespaces, real NAT), ${COUNT} sequential 2-token chat completions per row, ms`,
      ['path', 'first request', 'steady path', 'p50', 'p99', 'note'],
      rows,
    );
  } finally {
    await mesh?.close();
    await lab.destroy();
  }
}

await main();
