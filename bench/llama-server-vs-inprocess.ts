/**
 * The in-process backend (a `mesh-llm serve --model` node's own OpenAI API) against llama.cpp's
 * own `llama-server` built from the same llama.cpp source, on the same GGUF with the same threads
 * and parallel slots: aggregate streamed tokens/s and time to first token at 1, 4 and 8
 * concurrent requests. The two servers take turns round by round, so drift on a shared machine
 * lands on both. Builds llama-server on first use (scripts/build-llama-server.sh, ~10 min).
 *
 *   node bench/llama-server-vs-inprocess.ts [--quick] [--tokens 128] [--rounds 6] [--threads 1]
 *     [--parallel 8] [--concurrency 1,4,8] [--model FILE.gguf] [--no-build] [--only inprocess]
 */
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureTinyGguf } from '../src/backends/gguf/tiny-model.ts';
import { type LlamaServer, llamaServerBinary, startLlamaServer } from './lib/llama-server.ts';
import { percentile, printTable } from './lib/load.ts';
import { cpuMsOf, type NodeProcess, spawnNode, waitForModel } from './lib/node-process.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    tokens: { type: 'string', default: '128' },
    rounds: { type: 'string', default: '6' },
    threads: { type: 'string', default: '1' },
    parallel: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '1,4,8' },
    'ctx-size': { type: 'string', default: '512' },
    model: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    only: { type: 'string' },
  },
});
const TOKENS = Number(values.tokens);
const ROUNDS = values.quick ? 2 : Number(values.rounds);
const THREADS = Number(values.threads);
const PARALLEL = Number(values.parallel);
const CONTEXT = Number(values['ctx-size']);
const LEVELS = values.concurrency.split(',').map(Number);
const MODEL_NAME = 'bench-model';

interface Stream {
  ttftMs: number;
  tokens: number;
}

/** One streamed chat completion; tokens from the final usage chunk (both servers send it). */
async function stream(url: string): Promise<Stream> {
  const started = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL_NAME,
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: TOKENS,
      temperature: 0.8,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok || !res.body) throw new Error(`${url} answered ${res.status}: ${await res.text()}`);
  let ttftMs = Number.NaN;
  let tokens = 0;
  let chunks = 0;
  let buffered = '';
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    buffered += decoder.decode(bytes, { stream: true });
    let end = buffered.indexOf('\n\n');
    while (end >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf('\n\n');
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const data = JSON.parse(event.slice(6)) as {
        choices?: { delta?: { content?: string | null } }[];
        usage?: { completion_tokens?: number } | null;
      };
      if (data.choices?.[0]?.delta?.content) {
        chunks++;
        if (Number.isNaN(ttftMs)) ttftMs = performance.now() - started;
      }
      if (data.usage?.completion_tokens) tokens = data.usage.completion_tokens;
    }
  }
  return { ttftMs, tokens: tokens || chunks };
}

interface Sample {
  tokens: number;
  seconds: number;
  ttfts: number[];
  /** CPU time the server process used in the round (all its threads). */
  cpuMs: number;
}

interface Target {
  name: string;
  url: string;
  cpuMs(): Promise<number>;
  stop(): Promise<void>;
}

async function round(target: Target, concurrency: number): Promise<Sample> {
  const cpuBefore = await target.cpuMs();
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: concurrency }, () => stream(target.url)));
  return {
    tokens: results.reduce((a, r) => a + r.tokens, 0),
    seconds: (performance.now() - started) / 1000,
    ttfts: results.map((r) => r.ttftMs),
    cpuMs: (await target.cpuMs()) - cpuBefore,
  };
}

function merge(samples: Sample[]) {
  const tokens = samples.reduce((a, s) => a + s.tokens, 0);
  const seconds = samples.reduce((a, s) => a + s.seconds, 0);
  return {
    tokPerS: tokens / seconds,
    cpuUsPerToken: (samples.reduce((a, s) => a + s.cpuMs, 0) * 1000) / tokens,
    ttftP50: percentile(
      samples.flatMap((s) => s.ttfts),
      50,
    ),
  };
}

const dir = join(tmpdir(), 'mesh-llm-bench-models');
await mkdir(dir, { recursive: true });
const model = values.model ?? (await ensureTinyGguf(dir));

const targets: Target[] = [];
let node: NodeProcess | undefined;
let server: LlamaServer | undefined;
try {
  if (values.only !== 'llama-server') {
    node = await spawnNode([
      '--model',
      `${MODEL_NAME}=${model}`,
      '--threads',
      String(THREADS),
      '--slots',
      String(PARALLEL),
      '--ctx-size',
      String(CONTEXT),
      '--gpu',
      'off',
    ]);
    await waitForModel(node.apiUrl, MODEL_NAME);
    const n = node;
    targets.push({ name: 'in-process', url: n.apiUrl, cpuMs: () => n.cpuMs(), stop: () => n.stop() });
  }
  if (values.only !== 'inprocess') {
    const binary = await llamaServerBinary({ build: !values['no-build'] });
    if (!binary)
      throw new Error('llama-server is not built: run scripts/build-llama-server.sh (or drop --no-build)');
    server = await startLlamaServer({
      binary,
      model,
      threads: THREADS,
      parallel: PARALLEL,
      contextSize: CONTEXT,
      alias: MODEL_NAME,
    });
    const s = server;
    targets.push({
      name: 'llama-server',
      url: s.url,
      cpuMs: () => cpuMsOf(s.child.pid!),
      stop: () => s.stop(),
    });
  }

  const rows: (string | number)[][] = [];
  for (const concurrency of LEVELS) {
    const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]));
    for (const t of targets) await round(t, concurrency); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate the order each round so neither always runs right after the other's load.
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) samples.get(t.name)!.push(await round(t, concurrency));
    }
    const inproc = samples.has('in-process') ? merge(samples.get('in-process')!) : undefined;
    const server_ = samples.has('llama-server') ? merge(samples.get('llama-server')!) : undefined;
    rows.push([
      String(concurrency),
      inproc?.tokPerS ?? Number.NaN,
      server_?.tokPerS ?? Number.NaN,
      inproc && server_ ? `${(inproc.tokPerS / server_.tokPerS).toFixed(2)}x` : '—',
      inproc?.ttftP50 ?? Number.NaN,
      server_?.ttftP50 ?? Number.NaN,
      inproc?.cpuUsPerToken ?? Number.NaN,
      server_?.cpuUsPerToken ?? Number.NaN,
    ]);
  }
  printTable(
    `in-process vs llama-server — ${model.split('/').pop()}, ${THREADS} thread(s), ${PARALLEL} slots, ${TOKENS} tokens per stream, ${ROUNDS} rounds`,
    [
      'concurrent',
      'in-process tok/s',
      'llama-server tok/s',
      'ratio',
      'TTFT p50 in-process ms',
      'TTFT p50 llama-server ms',
      'CPU µs/token in-process',
      'CPU µs/token llama-server',
    ],
    rows,
  );
} finally {
  for (const t of targets) await t.stop().catch(() => {});
}
