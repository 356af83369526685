import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readGgufFileInfo } from 'node-llama-cpp';
import {
  buildTinyGguf,
  ensureTinyGguf,
  TINY_CHAT_TEMPLATE,
  tinyModelPath,
  writeTinyGguf,
} from '../../src/backends/gguf/tiny-model.ts';
import type { Obj } from './sse-util.ts';

describe('tiny GGUF generator', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mesh-llm-gguf-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is deterministic for a seed and differs across seeds', async () => {
    await writeTinyGguf(join(dir, 'a.gguf'), { seed: 11 });
    await writeTinyGguf(join(dir, 'b.gguf'), { seed: 11 });
    await writeTinyGguf(join(dir, 'c.gguf'), { seed: 12 });
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => readFile(join(dir, `${n}.gguf`))));
    assert.ok(a!.equals(b!));
    assert.ok(!a!.equals(c!));
    assert.equal(a!.byteLength, c!.byteLength);
    assert.ok(a!.byteLength > 300_000 && a!.byteLength < 700_000, `size ${a!.byteLength}`);
    assert.equal(a!.subarray(0, 4).toString('ascii'), 'GGUF');
    assert.equal(a!.readUInt32LE(4), 3);
  });

  it('writes the metadata and tensors llama.cpp needs', async () => {
    const path = join(dir, 'meta.gguf');
    await writeTinyGguf(path, { seed: 1, contextLength: 512 });
    const info = await readGgufFileInfo(path, { readTensorInfo: true });
    const meta = info.metadata as unknown as Obj;
    assert.equal(meta.general.architecture, 'llama');
    assert.equal(meta.llama.context_length, 512);
    assert.equal(meta.llama.embedding_length, 64);
    assert.equal(meta.llama.block_count, 2);
    assert.equal(meta.llama.attention.head_count, 4);
    assert.equal(meta.llama.feed_forward_length, 128);
    assert.equal(meta.tokenizer.ggml.model, 'llama');
    assert.equal(meta.tokenizer.chat_template, TINY_CHAT_TEMPLATE);
    const tokens: string[] = meta.tokenizer.ggml.tokens;
    assert.deepEqual(tokens.slice(0, 3), ['<unk>', '<s>', '</s>']);
    assert.equal(tokens[3], '<0x00>');
    assert.equal(tokens[258], '<0xFF>');
    assert.ok(meta.tokenizer.ggml.token_type.slice(3, 259).every((t: number) => t === 6));
    assert.equal(meta.tokenizer.ggml.scores.length, tokens.length);
    assert.equal(meta.tokenizer.ggml.bos_token_id, 1);
    assert.equal(meta.tokenizer.ggml.eos_token_id, 2);
    const names = new Set(info.tensorInfo?.map((t) => t.name));
    assert.equal(names.size, 3 + 2 * 9);
    for (const name of [
      'token_embd.weight',
      'output.weight',
      'blk.1.ffn_down.weight',
      'blk.0.attn_q.weight',
    ]) {
      assert.ok(names.has(name), name);
    }
  });

  it('writes atomically and ensureTinyGguf reuses an existing file', async () => {
    const sub = join(dir, 'nested', 'models');
    const path = await ensureTinyGguf(sub, { seed: 4 });
    assert.equal(path, tinyModelPath(sub));
    const first = await stat(path);
    const again = await ensureTinyGguf(sub, { seed: 4 });
    assert.equal(again, path);
    assert.equal((await stat(path)).mtimeMs, first.mtimeMs);
    assert.ok((await readFile(path)).equals(buildTinyGguf({ seed: 4 })));
  });

  it('rejects nonsense options', () => {
    assert.throws(() => buildTinyGguf({ contextLength: 3 }), RangeError);
    assert.throws(() => buildTinyGguf({ contextLength: 1.5 }), RangeError);
  });
});
