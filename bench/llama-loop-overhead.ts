/**
 * Where the in-process backend's per-token time goes (issue #16), with no HTTP: one sequence
 * of the tiny GGUF, 1 thread, greedy, generating `--tokens` tokens three ways, interleaved
 * round by round:
 *   - node-llama-cpp's public loop (`sequence.evaluate`), default batch dispatch;
 *   - the same with the dispatch the backend uses (process.nextTick);
 *   - a loop that drives node-llama-cpp's native addon directly (initBatch, addToBatch,
 *     decodeBatch, sampleToken: the same two native async jobs per token, none of its
 *     JavaScript). This uses undocumented internals (`_ctx`, `AddonSampler`) of the installed
 *     version and exists only to measure; the backend does not do it.
 * Compare with `bench/llama-server-vs-inprocess.ts` (llama-server through HTTP).
 *
 *   node bench/llama-loop-overhead.ts [--tokens 256] [--rounds 5]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { getLlama, type LlamaModel } from 'node-llama-cpp';
import { ensureTinyGguf } from '../src/backends/gguf/tiny-model.ts';
import { percentile, printTable } from './lib/load.ts';

const { values } = parseArgs({
  options: { tokens: { type: 'string', default: '256' }, rounds: { type: 'string', default: '5' } },
});
const TOKENS = Number(values.tokens);
const ROUNDS = Number(values.rounds);

/** The parts of node-llama-cpp's native context and sampler this bench calls. */
interface AddonContext {
  initBatch(size: number): void;
  addToBatch(
    sequence: number,
    firstIndex: number,
    tokens: Uint32Array,
    logitIndexes: Uint32Array,
  ): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(batchLogitIndex: number, sampler: unknown): Promise<number>;
}
interface AddonSampler {
  applyConfig(config: Record<string, unknown>): void;
  dispose(): void;
}
interface Internals {
  _llama: { _bindings: { AddonSampler: new (model: unknown) => AddonSampler } };
  _model: unknown;
}

async function publicLoop(model: LlamaModel, prompt: number[], nextTick: boolean): Promise<number> {
  const context = await model.createContext({
    contextSize: 1024,
    sequences: 1,
    threads: 1,
    batching: nextTick ? { dispatchSchedule: (dispatch) => process.nextTick(dispatch) } : undefined,
  });
  try {
    const start = performance.now();
    let n = 0;
    for await (const _ of context.getSequence().evaluate(prompt as never, { temperature: 0 })) {
      if (++n >= TOKENS) break;
    }
    return (n / (performance.now() - start)) * 1000;
  } finally {
    await context.dispose();
  }
}

async function addonLoop(model: LlamaModel, prompt: number[]): Promise<number> {
  const context = await model.createContext({ contextSize: 1024, sequences: 1, threads: 1 });
  const ctx = (context as unknown as { _ctx: AddonContext })._ctx;
  const internals = model as unknown as Internals;
  const sampler = new internals._llama._bindings.AddonSampler(internals._model);
  sampler.applyConfig({ temperature: 0, minP: 0, topK: 40, topP: 0.95, seed: 1 });
  try {
    const start = performance.now();
    let position = 0;
    let input = Uint32Array.from(prompt);
    for (let n = 0; n < TOKENS; n++) {
      ctx.initBatch(input.length);
      const [logitIndex] = ctx.addToBatch(0, position, input, Uint32Array.of(input.length - 1));
      await ctx.decodeBatch();
      position += input.length;
      input = Uint32Array.of(await ctx.sampleToken(logitIndex!, sampler));
    }
    return (TOKENS / (performance.now() - start)) * 1000;
  } finally {
    sampler.dispose();
    await context.dispose();
  }
}

const dir = await mkdtemp(join(tmpdir(), 'mesh-llm-loop-'));
try {
  const llama = await getLlama({ gpu: false });
  const model = await llama.loadModel({ modelPath: await ensureTinyGguf(dir) });
  const prompt = model.tokenize('The mesh pools the machines people have.') as number[];
  const results = { evaluate: [] as number[], nextTick: [] as number[], addon: [] as number[] };
  await addonLoop(model, prompt); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    results.evaluate.push(await publicLoop(model, prompt, false));
    results.nextTick.push(await publicLoop(model, prompt, true));
    results.addon.push(await addonLoop(model, prompt));
  }
  const base = percentile(results.nextTick, 50);
  const row = (name: string, list: number[]) => {
    const p50 = percentile(list, 50);
    return [name, p50, Math.min(...list), Math.max(...list), `${(p50 / base).toFixed(2)}x`];
  };
  printTable(
    `node-llama-cpp per-token loop, 1 sequence, 1 thread, ${TOKENS} tokens, ${ROUNDS} interleaved rounds (tok/s)`,
    ['loop', 'p50', 'min', 'max', 'vs evaluate + nextTick'],
    [
      row('sequence.evaluate, default dispatch', results.evaluate),
      row('sequence.evaluate, nextTick dispatch', results.nextTick),
      row('native addon driven directly', results.addon),
    ],
  );
  await model.dispose();
} finally {
  await rm(dir, { recursive: true, force: true });
}
