/**
 * Routing overhead, side by side in one run (issues #2 and #3): a fast fake OpenAI backend
 * called directly, through the local node, through a remote node (E2E encrypted, and plaintext
 * to a host without an inference key), and through a relay. Nodes are real `mesh-llm serve`
 * processes so each one's peak RSS is its own.
 *
 *   node bench/mesh-routing.ts [--quick]
 */
import { startFakeOpenAi } from '../test/helpers/fake-openai-server.ts';
import { latency, printTable, streamThroughput, timeToFirstToken } from './lib/load.ts';
import { type NodeProcess, spawnNode } from './lib/node-process.ts';

const quick = process.argv.includes('--quick');
const MODEL = 'bench';
const TOKENS = 64;
const prompt = 'x'.repeat(4096);
const nonStreamed = { model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: TOKENS };
const streamed = { ...nonStreamed, stream: true };

interface Setup {
  name: string;
  nodes: NodeProcess[];
  entry: string;
}

async function waitForModel(apiUrl: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const list = (await (await fetch(`${apiUrl}/v1/models`)).json()) as { data: { id: string }[] };
    if (list.data.some((m) => m.id === MODEL)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${apiUrl} never saw the model`);
}

async function main(): Promise<void> {
  const fake = await startFakeOpenAi({ tokens: TOKENS, model: MODEL });
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
    await waitForModel(client.apiUrl);
    setups.push({ name: 'remote node (E2E)', nodes: [client, host], entry: client.apiUrl });

    const plainHost = await spawnTracked([...backendArgs, '--no-e2e']);
    const plainClient = await spawnTracked(['--client', '--join', await plainHost.token()]);
    await waitForModel(plainClient.apiUrl);
    setups.push({
      name: 'remote node (plaintext)',
      nodes: [plainClient, plainHost],
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
    await waitForModel(relayClient.apiUrl);
    setups.push({
      name: 'via relay (E2E)',
      nodes: [relayClient, relay, hiddenHost],
      entry: relayClient.apiUrl,
    });

    const url = (entry: string) => `${entry}/v1/chat/completions`;
    const rows: (string | number)[][] = [];
    let directP50 = 0;
    let directTtft = 0;
    for (const setup of setups) {
      const target = url(setup.entry);
      await latency(target, nonStreamed, 20); // warm up connections and caches
      const lat = await latency(target, nonStreamed, quick ? 100 : 400);
      const ttft = await timeToFirstToken(target, streamed, quick ? 30 : 100);
      if (setup.nodes.length === 0) {
        directP50 = lat.p50;
        directTtft = ttft;
      }
      const s1 = await streamThroughput(target, streamed, 1, quick ? 10 : 30);
      const s16 = await streamThroughput(target, streamed, 16, quick ? 2 : 6);
      const s64 = await streamThroughput(target, streamed, 64, quick ? 1 : 3);
      const s128 = await streamThroughput(target, streamed, 128, quick ? 1 : 2);
      const rss = await Promise.all(setup.nodes.map((n) => n.peakRssMb()));
      rows.push([
        setup.name,
        lat.p50,
        lat.p99,
        lat.p50 - directP50,
        ttft - directTtft,
        s1.tokensPerSecond,
        s16.tokensPerSecond,
        s64.tokensPerSecond,
        s128.tokensPerSecond,
        lat.errors + s1.errors + s16.errors + s64.errors + s128.errors,
        rss.length ? rss.map((r) => r.toFixed(0)).join(' / ') : '—',
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
        'tok/s x1',
        'tok/s x16',
        'tok/s x64',
        'tok/s x128',
        'errors',
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
