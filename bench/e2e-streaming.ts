/**
 * Streaming throughput, encrypted vs plaintext, at one concurrency (issue #3's ≤ 5 % goal),
 * measured long enough to be read on a noisy machine. One host; an E2E client and a client that
 * predates E2E (--no-e2e) take turns, burst by burst, so drift lands on both. Besides tokens/s it
 * prints the CPU per streamed request of the whole machine (both nodes, the fake backend's process
 * and this one, which generates the load): the yardstick for what encryption's fixed cost
 * per request can take out of throughput once the CPUs are busy.
 *
 *   node bench/e2e-streaming.ts [--quick] [--streams 64] [--tokens 64]
 */
import { parseArgs } from 'node:util';
import { startFakeBackendProcess } from './lib/fake-backend-process.ts';
import { printTable, streamThroughput } from './lib/load.ts';
import { machineCpuMs, type NodeProcess, spawnNode, waitForModel } from './lib/node-process.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    streams: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '64' },
  },
});
const STREAMS = Number(values.streams);
const TOKENS = Number(values.tokens);
const BURSTS = values.quick ? 8 : 60;
const MODEL = 'bench';
const streamed = {
  model: MODEL,
  messages: [{ role: 'user', content: 'x'.repeat(4096) }],
  max_tokens: TOKENS,
  stream: true,
};

interface PathResult {
  name: string;
  client: NodeProcess;
  tokens: number;
  seconds: number;
  cpuMs: number;
  requests: number;
  errors: number;
}

async function main(): Promise<void> {
  const fake = await startFakeBackendProcess({ tokens: TOKENS, model: MODEL });
  const nodes: NodeProcess[] = [];
  try {
    const host = await spawnNode(['--backend', fake.url, '--backend-model', MODEL]);
    nodes.push(host);
    const paths: PathResult[] = [];
    for (const [name, extra] of [
      ['E2E', []],
      ['plaintext', ['--no-e2e']],
    ] as const) {
      const client = await spawnNode(['--client', ...extra, '--join', await host.token()]);
      nodes.push(client);
      await waitForModel(client.apiUrl, MODEL);
      paths.push({ name, client, tokens: 0, seconds: 0, cpuMs: 0, requests: 0, errors: 0 });
    }
    const url = (p: PathResult) => `${p.client.apiUrl}/v1/chat/completions`;
    for (const path of paths) await streamThroughput(url(path), streamed, STREAMS, 4);
    for (let burst = 0; burst < BURSTS; burst++) {
      // Alternate who goes first, so neither always runs right after the other's burst.
      for (const path of burst % 2 === 0 ? paths : [...paths].reverse()) {
        const before = await machineCpuMs([path.client, host, fake]);
        const run = await streamThroughput(url(path), streamed, STREAMS, 1);
        path.cpuMs += (await machineCpuMs([path.client, host, fake])) - before;
        path.tokens += run.tokens;
        path.seconds += run.seconds;
        path.requests += STREAMS;
        path.errors += run.errors;
      }
    }
    const plain = paths[1]!;
    const plainRate = plain.tokens / plain.seconds;
    printTable(
      `E2E vs plaintext streaming: ${STREAMS} streams, ${TOKENS}-token answers, 4 KB prompt, ${BURSTS} bursts each, interleaved`,
      ['path', 'tok/s', '% of plaintext', 'CPU ms per request, all processes', 'errors'],
      paths.map((p) => [
        p.name,
        p.tokens / p.seconds,
        (100 * (p.tokens / p.seconds)) / plainRate,
        p.cpuMs / p.requests,
        String(p.errors),
      ]),
    );
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await fake.close();
  }
}

await main();
