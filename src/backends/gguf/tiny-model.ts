/**
 * Writes a tiny, valid GGUF v3 llama model with seeded random f32 weights. It is what the demo
 * serves and what every test that needs real llama.cpp inference loads: ~0.5 MB, loads in
 * milliseconds, and generates (gibberish) at hundreds of tokens per second on one thread.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { bufferView } from '../../encoding/bytes.ts';

export interface TinyGgufOptions {
  /** PRNG seed for the weights; the same seed gives a byte-identical file. Default 1. */
  seed?: number;
  /** `llama.context_length` written into the file. Default 2048. */
  contextLength?: number;
  /** Dimensions other than the tiny default (64 wide, 2 layers, ffn 128). */
  shape?: GgufShape;
  /**
   * Write the header and leave the tensor data a sparse hole: a file of the declared size that
   * costs no disk, for tests of what happens before weights are read (e.g. the memory check).
   */
  headerOnly?: boolean;
}

export interface GgufShape {
  embedding: number;
  layers: number;
  feedForward: number;
}

/** The file name the helpers below use inside a directory. */
export const TINY_MODEL_FILE = 'tiny-llama.gguf';

export function tinyModelPath(dir: string): string {
  return join(dir, TINY_MODEL_FILE);
}

/** Writes the tiny model into `dir` unless a file is already there; returns its path. */
export async function ensureTinyGguf(dir: string, options: TinyGgufOptions = {}): Promise<string> {
  const path = tinyModelPath(dir);
  const existing = await stat(path).catch(() => undefined);
  if (!existing?.isFile() || existing.size === 0) await writeTinyGguf(path, options);
  return path;
}

/** ChatML: the model's own template, resolved by node-llama-cpp from the GGUF metadata. */
export const TINY_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const TINY_SHAPE: GgufShape = { embedding: 64, layers: 2, feedForward: 128 };
const N_HEAD = 4;
const ALIGNMENT = 32;

// GGUF metadata value types.
const T_UINT32 = 4;
const T_INT32 = 5;
const T_FLOAT32 = 6;
const T_BOOL = 7;
const T_STRING = 8;
const T_ARRAY = 9;

// llama.cpp token types.
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;

const WORD_PIECES = [
  '▁',
  '▁the',
  '▁a',
  '▁and',
  '▁to',
  '▁of',
  '▁is',
  '▁hello',
  '▁world',
  '▁mesh',
  '▁model',
  '▁user',
  '▁assistant',
  '▁system',
  'user',
  'assistant',
  'system',
  'ing',
  'er',
  'ed',
  'in',
  'on',
  'es',
  '.',
  ',',
  '!',
  '?',
];

type MetaValue =
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'str'; value: string }
  | { type: 'str[]'; value: string[] }
  | { type: 'f32[]'; value: number[] }
  | { type: 'i32[]'; value: number[] };

interface TensorSpec {
  name: string;
  /** GGML order: dims[0] is the row length. */
  dims: number[];
  /** Norm weights are ones; embeddings/output have a steering column (see fillTensor). */
  init: 'ones' | 'random' | 'embedding' | 'output';
}

/**
 * mulberry32: a tiny deterministic PRNG in [0, 1), the same on every platform (the model's
 * weights are reproducible from their seed; tests use it so a fuzz failure reproduces too).
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function vocabulary(): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TOKEN_BYTE);
  }
  tokens.push('<|im_start|>', '<|im_end|>');
  types.push(TOKEN_CONTROL, TOKEN_CONTROL);
  for (const piece of WORD_PIECES) {
    tokens.push(piece);
    types.push(TOKEN_NORMAL);
  }
  // SPM merges prefer higher scores; longer pieces win over their parts.
  const scores = tokens.map((t, i) => (types[i] === TOKEN_NORMAL ? -100 + t.length : 0));
  return { tokens, scores, types };
}

function tensors(nVocab: number, shape: GgufShape): TensorSpec[] {
  const { embedding: N_EMBD, layers: N_LAYER, feedForward: N_FF } = shape;
  const list: TensorSpec[] = [
    { name: 'token_embd.weight', dims: [N_EMBD, nVocab], init: 'embedding' },
    { name: 'output_norm.weight', dims: [N_EMBD], init: 'ones' },
    { name: 'output.weight', dims: [N_EMBD, nVocab], init: 'output' },
  ];
  for (let i = 0; i < N_LAYER; i++) {
    const p = `blk.${i}.`;
    list.push(
      { name: `${p}attn_norm.weight`, dims: [N_EMBD], init: 'ones' },
      { name: `${p}attn_q.weight`, dims: [N_EMBD, N_EMBD], init: 'random' },
      { name: `${p}attn_k.weight`, dims: [N_EMBD, N_EMBD], init: 'random' },
      { name: `${p}attn_v.weight`, dims: [N_EMBD, N_EMBD], init: 'random' },
      { name: `${p}attn_output.weight`, dims: [N_EMBD, N_EMBD], init: 'random' },
      { name: `${p}ffn_norm.weight`, dims: [N_EMBD], init: 'ones' },
      { name: `${p}ffn_gate.weight`, dims: [N_EMBD, N_FF], init: 'random' },
      { name: `${p}ffn_up.weight`, dims: [N_EMBD, N_FF], init: 'random' },
      { name: `${p}ffn_down.weight`, dims: [N_FF, N_EMBD], init: 'random' },
    );
  }
  return list;
}

/** Hidden dimension 0 carries a large constant, used to keep control tokens from being sampled. */
const STEER = 8;

/**
 * Random weights would sample an end-of-generation token about once per hundred tokens, making
 * token counts in tests a matter of luck. Every embedding gets a large constant in dimension 0,
 * which survives the residual stream and the final RMS norm as a large positive value; control
 * tokens' output rows weigh that dimension strongly negative and all others ignore it. So
 * generation runs until max_tokens or the context end, and output is still random bytes.
 */
function fillTensor(t: TensorSpec, rand: () => number, tokenTypes: number[]): Float32Array {
  const rowLength = t.dims[0]!;
  const count = t.dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count);
  if (t.init === 'ones') return data.fill(1);
  // Scaled by fan-in so activations stay in a sane range through both layers.
  const scale = t.init === 'embedding' ? 1 : 1 / Math.sqrt(rowLength);
  for (let i = 0; i < count; i++) data[i] = (rand() * 2 - 1) * scale;
  if (t.init === 'embedding') {
    for (let row = 0; row < count / rowLength; row++) data[row * rowLength] = STEER;
  } else if (t.init === 'output') {
    for (let row = 0; row < count / rowLength; row++) {
      data[row * rowLength] = tokenTypes[row] === TOKEN_NORMAL || tokenTypes[row] === TOKEN_BYTE ? 0 : -3;
    }
  }
  return data;
}

/** Appends little-endian GGUF primitives to a growing list of chunks. */
class Writer {
  readonly chunks: Buffer[] = [];
  size = 0;
  push(buf: Buffer): void {
    this.chunks.push(buf);
    this.size += buf.byteLength;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v | 0);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.byteLength);
    this.push(bytes);
  }
  pad(alignment: number): void {
    const rem = this.size % alignment;
    if (rem !== 0) this.push(Buffer.alloc(alignment - rem));
  }
  meta(key: string, v: MetaValue): void {
    this.str(key);
    switch (v.type) {
      case 'u32':
        this.u32(T_UINT32);
        this.u32(v.value);
        break;
      case 'i32':
        this.u32(T_INT32);
        this.i32(v.value);
        break;
      case 'f32':
        this.u32(T_FLOAT32);
        this.f32(v.value);
        break;
      case 'bool':
        this.u32(T_BOOL);
        this.push(Buffer.from([v.value ? 1 : 0]));
        break;
      case 'str':
        this.u32(T_STRING);
        this.str(v.value);
        break;
      case 'str[]':
        this.u32(T_ARRAY);
        this.u32(T_STRING);
        this.u64(v.value.length);
        for (const s of v.value) this.str(s);
        break;
      case 'f32[]': {
        this.u32(T_ARRAY);
        this.u32(T_FLOAT32);
        this.u64(v.value.length);
        const b = Buffer.alloc(v.value.length * 4);
        v.value.forEach((x, i) => {
          b.writeFloatLE(x, i * 4);
        });
        this.push(b);
        break;
      }
      case 'i32[]': {
        this.u32(T_ARRAY);
        this.u32(T_INT32);
        this.u64(v.value.length);
        const b = Buffer.alloc(v.value.length * 4);
        v.value.forEach((x, i) => {
          b.writeInt32LE(x, i * 4);
        });
        this.push(b);
        break;
      }
    }
  }
}

/** Builds the whole file in memory (it is small). Exported for tests that want the bytes. */
export function buildTinyGguf(options: TinyGgufOptions = {}): Buffer {
  return buildGguf(options).bytes;
}

/** The file's bytes (the header alone with `headerOnly`) and the size it declares. */
function buildGguf(options: TinyGgufOptions): { bytes: Buffer; fileSize: number } {
  const seed = options.seed ?? 1;
  const contextLength = options.contextLength ?? 2048;
  if (!Number.isInteger(contextLength) || contextLength < 16 || contextLength > 1 << 20) {
    throw new RangeError('contextLength must be an integer between 16 and 1048576');
  }
  const shape = options.shape ?? TINY_SHAPE;
  if (shape.embedding % N_HEAD !== 0) throw new RangeError(`shape.embedding must be a multiple of ${N_HEAD}`);
  const vocab = vocabulary();
  const tensorList = tensors(vocab.tokens.length, shape);

  const metadata: Array<[string, MetaValue]> = [
    ['general.architecture', { type: 'str', value: 'llama' }],
    ['general.name', { type: 'str', value: 'mesh-llm tiny test model' }],
    ['general.alignment', { type: 'u32', value: ALIGNMENT }],
    ['general.file_type', { type: 'u32', value: 0 }], // ALL_F32
    ['llama.context_length', { type: 'u32', value: contextLength }],
    ['llama.embedding_length', { type: 'u32', value: shape.embedding }],
    ['llama.block_count', { type: 'u32', value: shape.layers }],
    ['llama.feed_forward_length', { type: 'u32', value: shape.feedForward }],
    ['llama.attention.head_count', { type: 'u32', value: N_HEAD }],
    ['llama.attention.head_count_kv', { type: 'u32', value: N_HEAD }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['llama.rope.dimension_count', { type: 'u32', value: shape.embedding / N_HEAD }],
    ['llama.rope.freq_base', { type: 'f32', value: 10000 }],
    ['tokenizer.ggml.model', { type: 'str', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'str[]', value: vocab.tokens }],
    ['tokenizer.ggml.scores', { type: 'f32[]', value: vocab.scores }],
    ['tokenizer.ggml.token_type', { type: 'i32[]', value: vocab.types }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 1 }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: 2 }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: 0 }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
    ['tokenizer.chat_template', { type: 'str', value: TINY_CHAT_TEMPLATE }],
  ];

  const w = new Writer();
  w.push(Buffer.from('GGUF', 'ascii'));
  w.u32(3);
  w.u64(tensorList.length);
  w.u64(metadata.length);
  for (const [key, value] of metadata) w.meta(key, value);

  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensorList) {
    offsets.push(offset);
    const bytes = t.dims.reduce((a, b) => a * b, 1) * 4;
    offset += Math.ceil(bytes / ALIGNMENT) * ALIGNMENT;
  }
  tensorList.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(0); // GGML_TYPE_F32
    w.u64(offsets[i]!);
  });
  w.pad(ALIGNMENT);
  const fileSize = w.size + offset;
  if (options.headerOnly) return { bytes: Buffer.concat(w.chunks, w.size), fileSize };

  const rand = mulberry32(seed);
  for (const t of tensorList) {
    const data = fillTensor(t, rand, vocab.types);
    // Float32Array is little-endian on every platform Node supports (x64, arm64).
    w.push(bufferView(data));
    w.pad(ALIGNMENT);
  }
  return { bytes: Buffer.concat(w.chunks, w.size), fileSize };
}

/**
 * Writes the model atomically (temp file + rename), so concurrent tests creating the same
 * path never observe a half-written file.
 */
export async function writeTinyGguf(path: string, options: TinyGgufOptions = {}): Promise<void> {
  const { bytes, fileSize } = buildGguf(options);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, bytes);
    if (fileSize > bytes.byteLength) await truncate(tmp, fileSize);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
