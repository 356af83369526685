/**
 * What tool calling and structured outputs cost on the in-process backend: the tiny GGUF (random
 * weights, threads 1), one request at a time, each kind of answer in turn so drift lands on all.
 * "grammar ms" is building the grammar alone (node-llama-cpp compiles it per request).
 *
 *   node bench/agent-api.ts [--quick]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';
import { writeTinyGguf } from '../src/backends/gguf/tiny-model.ts';
import { grammarFor } from '../src/backends/llama/grammar.ts';
import { outputPlanOf } from '../src/backends/llama/output-plan.ts';
import { LlamaCppBackend } from '../src/backends/llama-cpp.ts';
import { readAll } from '../src/http/exchange.ts';
import { silentLogger } from '../src/log.ts';
import { parseOpenAiRequest, validateChatCompletion } from '../src/openai/request.ts';

const rounds = process.argv.includes('--quick') ? 3 : 10;
const params = {
  type: 'object',
  properties: { city: { type: 'string', enum: ['Paris', 'Rome'] }, days: { type: 'integer' } },
  required: ['city', 'days'],
  additionalProperties: false,
};
const tools = [{ type: 'function', function: { name: 'get_weather', parameters: params } }];
const KINDS: Record<string, Record<string, unknown>> = {
  'plain text (64 tokens)': { max_tokens: 64 },
  json_schema: { response_format: { type: 'json_schema', json_schema: { name: 'w', schema: params } } },
  'tools, auto (64 tokens)': { tools, max_tokens: 64 },
  'tools, named': { tools, tool_choice: { type: 'function', function: { name: 'get_weather' } } },
  'tools, required': { tools, tool_choice: 'required', parallel_tool_calls: false },
};

const dir = await mkdtemp(join(tmpdir(), 'mesh-llm-bench-agent-'));
const path = join(dir, 'tiny.gguf');
await writeTinyGguf(path, { seed: 11 });
const backend = new LlamaCppBackend({
  modelPath: path,
  modelName: 'tiny',
  threads: 1,
  parallel: 1,
  contextSize: 2048,
  logger: silentLogger(),
});
await backend.start();
// Grammars are timed on a second copy of the model (the backend's is private to it).
const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
const grammarModel = await llama.loadModel({ modelPath: path });
const stats = new Map<string, { ms: number[]; prompt: number; completion: number[]; grammar: number[] }>();
try {
  for (let round = 0; round < rounds; round++) {
    for (const [kind, over] of Object.entries(KINDS)) {
      const body = {
        model: 'tiny',
        seed: round + 1,
        max_tokens: 300,
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        ...over,
      };
      const entry = stats.get(kind) ?? { ms: [], prompt: 0, completion: [], grammar: [] };
      stats.set(kind, entry);
      const plan = outputPlanOf(validateChatCompletion(body));
      const g0 = performance.now();
      await grammarFor(grammarModel, plan);
      entry.grammar.push(performance.now() - g0);
      const t0 = performance.now();
      const response = await backend.handle(
        parseOpenAiRequest('POST', '/v1/chat/completions', Buffer.from(JSON.stringify(body))),
        new AbortController().signal,
      );
      const answer = JSON.parse((await readAll(response.body)).toString('utf8'));
      entry.ms.push(performance.now() - t0);
      entry.prompt = answer.usage.prompt_tokens;
      entry.completion.push(answer.usage.completion_tokens);
    }
  }
} finally {
  await backend.stop();
  await grammarModel.dispose();
  await rm(dir, { recursive: true, force: true });
}

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
console.log(`\nagent API on the in-process tiny model (threads 1, ${rounds} requests each, one at a time)\n`);
console.log(
  '| answer                  | p50 ms | prompt tokens | completion tokens (mean) | tok/s | grammar ms (p50) |',
);
console.log(
  '| ----------------------- | ------ | ------------- | ------------------------ | ----- | ---------------- |',
);
for (const [kind, s] of stats) {
  const tps = (mean(s.completion) / mean(s.ms)) * 1000;
  console.log(
    `| ${kind.padEnd(23)} | ${p50(s.ms).toFixed(0).padStart(6)} | ${String(s.prompt).padStart(13)} | ${mean(s.completion).toFixed(1).padStart(24)} | ${tps.toFixed(0).padStart(5)} | ${p50(s.grammar).toFixed(1).padStart(16)} |`,
  );
}
