/**
 * Conversation affinity (issue #17): the time to first token of a conversation's second turn
 * when it goes back to the host that served the first (its llama.cpp sequence still holds the
 * shared prefix) against the same turn sent to the other host (nothing cached). Real llama.cpp
 * (the generated tiny GGUF, in-process, 1 thread, 1 sequence per host) on two host nodes, asked
 * through a client node; the answer is one token long, so its whole duration is the TTFT. The
 * cold case is made by pointing the client's affinity table at the other host.
 *
 *   node bench/affinity-ttft.ts [--quick]
 */
import { conversationKeys } from '../src/routing/affinity.ts';
import { TestCluster, waitUntil } from '../test/helpers/cluster.ts';
import { percentile, printTable } from './lib/load.ts';

const quick = process.argv.includes('--quick');
const CONVERSATIONS = quick ? 6 : 16;
const PREFIX_CHARS = 1_400; // the tiny model's vocabulary is mostly bytes: about a token each
const MODEL = 'tiny';

const cluster = new TestCluster();
try {
  const path = await cluster.tinyModel();
  const model = { path, name: MODEL, threads: 1, parallel: 1, contextSize: 2048 };
  const a = await cluster.start('host-a', { model });
  const token = a.mesh.inviteToken();
  const b = await cluster.start('host-b', { model, join: [token] });
  const client = await cluster.start('client', { client: true, join: [token] });
  await waitUntil(
    () => (client.router.pools().find((p) => p.name === MODEL)?.hosts.length ?? 0) === 2,
    'the client to see both hosts',
    60_000,
  );

  const ask = async (messages: unknown[]) => {
    const started = performance.now();
    const response = await fetch(`${client.apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages, max_tokens: 1, temperature: 0 }),
    });
    const body = (await response.json()) as { usage?: { prompt_tokens?: number } };
    if (response.status !== 200) throw new Error(`status ${response.status}`);
    return {
      ms: performance.now() - started,
      host: response.headers.get('x-mesh-host') ?? '',
      promptTokens: body.usage?.prompt_tokens ?? 0,
    };
  };

  const warm: number[] = [];
  const cold: number[] = [];
  let promptTokens = 0;
  for (let c = 0; c < CONVERSATIONS; c++) {
    const system = `${c} `.repeat(PREFIX_CHARS / 2).slice(0, PREFIX_CHARS);
    const turn1 = [
      { role: 'system', content: system },
      { role: 'user', content: 'first question' },
    ];
    const first = await ask(turn1);
    const turn2 = [
      ...turn1,
      { role: 'assistant', content: 'answer' },
      { role: 'user', content: 'second one' },
    ];
    const other = first.host === a.endpointId ? b.endpointId : a.endpointId;
    const keys = conversationKeys(MODEL, turn1);
    // Cold: the same second turn on the other host, which holds another conversation.
    client.router.affinity.remember(keys, other);
    const coldTurn = await ask(turn2);
    if (coldTurn.host !== other) throw new Error('the cold turn did not reach the other host');
    // Warm: back to the first host (what affinity does by itself).
    client.router.affinity.remember(keys, first.host);
    const warmTurn = await ask(turn2);
    if (warmTurn.host !== first.host) throw new Error('the warm turn did not reach the first host');
    if (c > 0) {
      // the first conversation warms up both hosts and is not counted
      warm.push(warmTurn.ms);
      cold.push(coldTurn.ms);
    }
    promptTokens = warmTurn.promptTokens;
  }
  const row = (label: string, xs: number[]) => [
    label,
    String(xs.length),
    String(promptTokens),
    percentile(xs, 50),
    xs.reduce((s, x) => s + x, 0) / xs.length,
    percentile(xs, 90),
  ];
  printTable(
    'Second turn of a conversation, tiny GGUF via a client node (llama.cpp, 1 thread, 1 sequence per host)',
    ['second turn sent to', 'turns', 'prompt tokens', 'TTFT p50 ms', 'mean ms', 'p90 ms'],
    [row('the same host (affinity)', warm), row('the other host (cold)', cold)],
  );
  const gain = percentile(cold, 50) / percentile(warm, 50);
  process.stdout.write(`TTFT p50: affinity ${gain.toFixed(2)}× faster\n`);
} finally {
  await cluster.stopAll();
}
