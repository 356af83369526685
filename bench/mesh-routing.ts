/**
 * Routing overhead, side by side in one run (issues #2 and #3): a fast fake OpenAI backend (a
 * process of its own, as a real backend is) called directly, through the local node, through a
 * remote node (E2E encrypted, and plaintext from a client that predates E2E, to the same host), and
 * through a relay. Nodes are real `mesh-llm serve` processes so each one's peak RSS is its own.
 * Every path is warmed up first, then the paths take turns in short blocks (latency, time to first
 * token, then each concurrency level), so the machine's drift is shared instead of landing on
 * whichever path ran last. The CPU column is each node's CPU time (from /proc) per request during
 * the one-at-a-time latency blocks.
 *
 *   node bench/mesh-routing.ts [--quick]
 */
import { startFakeBackendProcess } from './lib/fake-backend-process.ts';
import { latency, percentile, printTable, streamThroughput, timesToFirstToken } from './lib/load.ts';
import { machineCpuMs, type NodeProcess, spawnNode, waitForModel } from './lib/node-process.ts';

const quick = process.argv.includes('--quick');
const MODEL = 'bench';
const TOKENS = 64;
const prompt = 'x'.repeat(4096);
const nonStreamed = { model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: TOKENS };
const streamed = { ...nonStreamed, stream: true };
const CONCURRENCY = [1, 16, 64, 128];
/**
 * At this concurrency the machine's whole CPU per stream is also measured (the path's nodes, the
 * backend process and this one, which generates the load): the yardstick for what a fixed
 * per-request cost, such as encryption's, can take out of throughput when the CPUs are busy.
 */
const BURST_CPU_CONCURRENCY = 64;

interface Setup {
  name: string;
  nodes: NodeProcess[];
  entry: string;
}

async function main(): Promise<void> {
  const fake = await startFakeBackendProcess({ tokens: TOKENS, model: MODEL });
  const backendArgs = ['--backend', fake.url, '--backend-model', MODEL];
  const setups: Setup[] = [{ name: 'direct to backend', nodes: [], entry: fake.url }];
  const all: NodeProcess[] = [];
  const spawnTracked = async (args: string[]) => {
    const node = await spawnNode(args);
    all.push(node);
    return node;
  };
  try {
    const local = await spawnTracked(backendArgs);
    setups.push({ name: 'local node', nodes: [local], entry: local.apiUrl });

    const host = await spawnTracked(backendArgs);
    const client = await spawnTracked(['--client', '--join', await host.token()]);
    await waitForModel(client.apiUrl, MODEL);
    setups.push({ name: 'remote node (E2E)', nodes: [client, host], entry: client.apiUrl });

    // The same host, from a client that predates E2E (--no-e2e): the two remote rows differ
    // only in encryption, not in which host process answers.
    const plainClient = await spawnTracked(['--client', '--no-e2e', '--join', await host.token()]);
    await waitForModel(plainClient.apiUrl, MODEL);
    setups.push({
      name: 'remote node (plaintext)',
      nodes: [plainClient, host],
      entry: plainClient.apiUrl,
    });

    const relay = await spawnTracked(['--relay']);
    const relayToken = await relay.token();
    const hiddenHost = await spawnTracked([
      ...backendArgs,
      '--join',
      relayToken,
      '--reachable-only-via-relay',
    ]);
    const relayClient = await spawnTracked(['--client', '--join', relayToken]);
    await waitForModel(relayClient.apiUrl, MODEL);
    setups.push({
      name: 'via relay (E2E)',
      nodes: [relayClient, relay, hiddenHost],
      entry: relayClient.apiUrl,
    });

    const url = (entry: string) => `${entry}/v1/chat/completions`;
    // A fresh node runs its first few hundred requests through cold JIT code; a serving node
    // does not, so every path is warmed up before anything is measured.
    for (const setup of setups) {
      await latency(url(setup.entry), nonStreamed, quick ? 300 : 1000);
      await streamThroughput(url(setup.entry), streamed, 16, quick ? 4 : 10);
    }
    // The paths take turns in short blocks, so drift on a shared machine lands on all of them.
    const results = setups.map((setup) => ({
      latency: [] as number[],
      /** CPU ms each node spent in the latency blocks (requests sent one at a time). */
      latencyCpuMs: setup.nodes.map(() => 0),
      ttft: [] as number[],
      errors: 0,
      streams: new Map<number, { tokens: number; seconds: number }>(),
      /** CPU ms of every process (its nodes, the backend, this load generator) at x64. */
      burstCpuMs: 0,
      burstRequests: 0,
    }));
    const blocks = quick ? 10 : 30;
    for (let block = 0; block < blocks; block++) {
      for (const [i, setup] of setups.entries()) {
        const cpuBefore = await Promise.all(setup.nodes.map((n) => n.cpuMs()));
        const lat = await latency(url(setup.entry), nonStreamed, 20);
        const cpuAfter = await Promise.all(setup.nodes.map((n) => n.cpuMs()));
        setup.nodes.forEach((_, n) => {
          results[i]!.latencyCpuMs[n]! += cpuAfter[n]! - cpuBefore[n]!;
        });
        results[i]!.latency.push(...lat.times);
        results[i]!.errors += lat.errors;
        results[i]!.ttft.push(...(await timesToFirstToken(url(setup.entry), streamed, 5)));
      }
    }
    for (const concurrency of CONCURRENCY) {
      const rounds = Math.max(quick ? 3 : 8, Math.ceil((quick ? 64 : 192) / concurrency));
      for (let round = 0; round < rounds; round++) {
        for (const [i, setup] of setups.entries()) {
          const measured = concurrency === BURST_CPU_CONCURRENCY;
          const before = measured ? await machineCpuMs([...setup.nodes, fake]) : 0;
          const run = await streamThroughput(url(setup.entry), streamed, concurrency, 1);
          if (measured) {
            results[i]!.burstCpuMs += (await machineCpuMs([...setup.nodes, fake])) - before;
            results[i]!.burstRequests += concurrency;
          }
          const total = results[i]!.streams.get(concurrency) ?? { tokens: 0, seconds: 0 };
          results[i]!.streams.set(concurrency, {
            tokens: total.tokens + run.tokens,
            seconds: total.seconds + run.seconds,
          });
          results[i]!.errors += run.errors;
        }
      }
    }
    const directP50 = percentile(results[0]!.latency, 50);
    const directTtft = percentile(results[0]!.ttft, 50);
    const rows: (string | number)[][] = [];
    for (const [i, setup] of setups.entries()) {
      const r = results[i]!;
      const p50 = percentile(r.latency, 50);
      const tokS = (c: number) => {
        const t = r.streams.get(c)!;
        return t.tokens / t.seconds;
      };
      rows.push([
        setup.name,
        p50,
        percentile(r.latency, 99),
        p50 - directP50,
        percentile(r.ttft, 50) - directTtft,
        ...CONCURRENCY.map(tokS),
        r.errors,
        r.latencyCpuMs.map((ms) => (ms / r.latency.length).toFixed(2)).join(' / ') || '—',
        (r.burstCpuMs / r.burstRequests).toFixed(2),
        (await Promise.all(setup.nodes.map((n) => n.peakRssMb()))).map((mb) => mb.toFixed(0)).join(' / ') ||
          '—',
      ]);
    }
    printTable(
      `Routing overhead — fake backend streaming ${TOKENS} tokens, 4 KB prompt (${quick ? 'quick' : 'full'} run)`,
      [
        'path',
        'p50 ms',
        'p99 ms',
        '+p50 ms',
        '+TTFT ms',
        ...CONCURRENCY.map((c) => `tok/s x${c}`),
        'errors',
        'CPU ms/req per node',
        `CPU ms/stream x${BURST_CPU_CONCURRENCY}, all processes`,
        'peak RSS MB per node',
      ],
      rows,
    );
  } finally {
    await Promise.all(all.map((n) => n.stop()));
    await fake.close();
  }
}

await main();
