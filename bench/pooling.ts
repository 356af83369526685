/**
 * Pooling (issue #17): aggregate tokens/s of a paced backend (20 tokens/s per stream, 2 slots
 * per host, like a small llama-server) with 1, 2 and 3 hosts behind one client node, then the
 * same with the client node itself as one of the hosts. Twelve streams run back to back the
 * whole time, more than three hosts' six slots, so every configuration is saturated; tokens are
 * counted as they arrive, in a window that opens after a warm-up. Every node and every backend
 * is a process of its own (`mesh-llm serve`, loopback, E2E on), as on real machines.
 *
 *   node bench/pooling.ts [--quick]
 */
import { type FakeBackendProcess, startFakeBackendProcess } from './lib/fake-backend-process.ts';
import { printTable } from './lib/load.ts';
import { type NodeProcess, spawnNode } from './lib/node-process.ts';

const quick = process.argv.includes('--quick');
const MODEL = 'paced';
const STREAMS = 12;
// 10 s per answer at 20 tokens/s: long next to the gap between one answer and the next request
// (tens of ms on a quiet machine, up to a second on this shared one), as real answers are.
const TOKENS = 200;
const WARMUP_MS = quick ? 12_000 : 15_000;
const WINDOW_MS = quick ? 20_000 : 40_000;
const SLOTS = 2;
const TOKEN_DELAY_MS = 50;

interface Result {
  tokensPerSec: number;
  errors: number;
  perHost: Map<string, number>;
  /** How answers travelled (x-mesh-path: local, direct, relay, forwarded), counted per answer. */
  paths: Map<string, number>;
}

type Pool = { name: string; hosts: { slots: number | null }[] };

async function run(hosts: number, clientHosts: boolean): Promise<Result> {
  const nodes: NodeProcess[] = [];
  const fakes: FakeBackendProcess[] = [];
  const paced = async () => {
    const fake = await startFakeBackendProcess({
      tokens: TOKENS,
      model: MODEL,
      tokenDelayMs: TOKEN_DELAY_MS,
      slots: SLOTS,
    });
    fakes.push(fake);
    return ['--backend', fake.url, '--backend-model', MODEL, '--slots', String(SLOTS)];
  };
  const start = async (args: string[]) => {
    // A long queue wait: the one-host rows queue ten streams behind two slots by design.
    const node = await spawnNode([...args, '--heartbeat-ms', '2000', '--queue-wait', '120']);
    nodes.push(node);
    return node;
  };
  try {
    const remote = clientHosts ? hosts - 1 : hosts;
    // Hosts join the client's own invite, so each has a direct connection to it from the start
    // (no relay node, nothing learned second-hand): what is measured is the pooling.
    const client = await start(clientHosts ? await paced() : ['--client']);
    const join = ['--join', await client.token()];
    for (let i = 0; i < remote; i++) await start([...(await paced()), ...join]);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const pools = ((await client.status()).models ?? []) as Pool[];
      const seen = pools.find((p) => p.name === MODEL)?.hosts.filter((h) => h.slots === SLOTS).length ?? 0;
      if (seen === hosts) break;
      if (Date.now() > deadline) throw new Error(`the client sees ${seen} of ${hosts} hosts`);
      await new Promise((r) => setTimeout(r, 200));
    }
    let counting = false;
    let running = true;
    let tokens = 0;
    let errors = 0;
    const perHost = new Map<string, number>();
    const paths = new Map<string, number>();
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
          if (counting) {
            const path = response.headers.get('x-mesh-path') ?? '?';
            paths.set(path, (paths.get(path) ?? 0) + 1);
          }
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
    return { tokensPerSec: tokens / seconds, errors, perHost, paths };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await Promise.all(fakes.map((f) => f.close()));
  }
}

const rows: (string | number)[][] = [];
for (const clientHosts of [false, true]) {
  let one = 0;
  for (const hosts of [1, 2, 3]) {
    const result = await run(hosts, clientHosts);
    process.stderr.write(
      `${clientHosts ? 'client +' : ''} ${hosts} host(s): ${result.tokensPerSec.toFixed(1)} tok/s\n`,
    );
    if (hosts === 1) one = result.tokensPerSec;
    const shares = [...result.perHost.values()].sort((a, b) => b - a);
    const total = shares.reduce((a, b) => a + b, 0) || 1;
    rows.push([
      clientHosts ? `client + ${hosts - 1} remote` : `${hosts} remote`,
      String(hosts),
      result.tokensPerSec,
      String(hosts * SLOTS * (1000 / TOKEN_DELAY_MS)),
      `${(result.tokensPerSec / one).toFixed(2)}×`,
      shares.map((n) => `${Math.round((100 * n) / total)}%`).join(' / '),
      [...result.paths].map(([path, n]) => `${path} ${n}`).join(', '),
      String(result.errors),
    ]);
  }
}
printTable(
  `Pooling: ${STREAMS} streams back to back, ${SLOTS} slots × 20 tokens/s per host, ${WINDOW_MS / 1000} s window`,
  ['hosts', 'n', 'tok/s', 'ideal tok/s', 'vs 1 host', 'share of tokens per host', 'paths', 'errors'],
  rows,
);
