/**
 * Pooling (issue #17): aggregate tokens/s of a paced backend (20 tokens/s per stream, 2 slots
 * per host, like a small llama-server) with 1, 2 and 3 hosts behind one client node, then the
 * same with the client node itself as one of the hosts. Twelve streams run back to back the
 * whole time, more than three hosts' six slots, so every configuration is saturated; tokens are
 * counted as they arrive, in a window that opens after a warm-up. Real nodes in this process
 * (loopback, E2E on); the backends are paced fake OpenAI servers.
 *
 *   node bench/pooling.ts [--quick]
 */
import type { MeshNode } from '../src/node/mesh-node.ts';
import { TestCluster, waitUntil } from '../test/helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../test/helpers/fake-openai-server.ts';
import { printTable } from './lib/load.ts';

const quick = process.argv.includes('--quick');
const MODEL = 'paced';
const STREAMS = 12;
const TOKENS = 40; // 2 s per answer at 20 tokens/s
const WARMUP_MS = quick ? 2_500 : 4_000;
const WINDOW_MS = quick ? 6_000 : 12_000;
const SLOTS = 2;
const TOKEN_DELAY_MS = 50;

interface Result {
  tokensPerSec: number;
  errors: number;
  perHost: Map<string, number>;
}

async function run(hosts: number, clientHosts: boolean): Promise<Result> {
  const cluster = new TestCluster();
  const fakes: FakeOpenAiServer[] = [];
  const paced = async () => {
    const fake = await startFakeOpenAi({
      model: MODEL,
      tokens: TOKENS,
      tokenDelayMs: TOKEN_DELAY_MS,
      slots: SLOTS,
    });
    fakes.push(fake);
    return { url: fake.url, model: MODEL, slots: SLOTS };
  };
  try {
    const remote = clientHosts ? hosts - 1 : hosts;
    const seed = await cluster.start('seed', { relay: true });
    const token = seed.mesh.inviteToken();
    const client: MeshNode = await cluster.start(
      'client',
      clientHosts ? { backend: await paced(), join: [token] } : { client: true, join: [token] },
    );
    for (let i = 0; i < remote; i++)
      await cluster.start(`host-${i}`, { backend: await paced(), join: [token] });
    await waitUntil(
      () =>
        (client.router
          .pools()
          .find((p) => p.name === MODEL)
          ?.hosts.filter((h) => h.slots === SLOTS).length ?? 0) === hosts,
      'the client to see every host',
      60_000,
    );
    let counting = false;
    let running = true;
    let tokens = 0;
    let errors = 0;
    const perHost = new Map<string, number>();
    const worker = async () => {
      while (running) {
        try {
          const response = await fetch(`${client.apiUrl}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'go' }], stream: true }),
          });
          if (response.status !== 200 || !response.body) {
            errors++;
            await response.arrayBuffer().catch(() => undefined);
            continue;
          }
          const host = response.headers.get('x-mesh-host') ?? '?';
          const decoder = new TextDecoder();
          let pending = '';
          for await (const chunk of response.body) {
            pending += decoder.decode(chunk as Uint8Array, { stream: true });
            const events = pending.split('\n\n');
            pending = events.pop()!;
            for (const event of events) {
              if (counting && event.includes('"delta":{"content":"')) {
                tokens++;
                perHost.set(host, (perHost.get(host) ?? 0) + 1);
              }
            }
          }
        } catch {
          errors++;
        }
      }
    };
    const workers = Array.from({ length: STREAMS }, worker);
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    counting = true;
    const started = performance.now();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    counting = false;
    const seconds = (performance.now() - started) / 1000;
    running = false;
    await Promise.all(workers);
    return { tokensPerSec: tokens / seconds, errors, perHost };
  } finally {
    await cluster.stopAll();
    await Promise.all(fakes.map((f) => f.close()));
  }
}

const rows: (string | number)[][] = [];
for (const clientHosts of [false, true]) {
  let one = 0;
  for (const hosts of [1, 2, 3]) {
    const result = await run(hosts, clientHosts);
    if (hosts === 1) one = result.tokensPerSec;
    const shares = [...result.perHost.values()].sort((a, b) => b - a);
    const total = shares.reduce((a, b) => a + b, 0) || 1;
    rows.push([
      clientHosts ? `client + ${hosts - 1} remote` : `${hosts} remote`,
      hosts,
      result.tokensPerSec,
      hosts * SLOTS * (1000 / TOKEN_DELAY_MS),
      `${(result.tokensPerSec / one).toFixed(2)}×`,
      shares.map((n) => `${Math.round((100 * n) / total)}%`).join(' / '),
      result.errors,
    ]);
  }
}
printTable(
  `Pooling: ${STREAMS} streams back to back, ${SLOTS} slots × 20 tokens/s per host, ${WINDOW_MS / 1000} s window`,
  ['hosts', 'n', 'tok/s', 'ideal tok/s', 'vs 1 host', 'share of tokens per host', 'errors'],
  rows,
);
