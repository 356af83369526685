import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  combineParts,
  type LlamaBinaryKind,
  llamaBinaryPackages,
  measureCode,
  sha256File,
} from '../../src/hardening/measure.ts';

let dir: string;

async function makeApp(root: string): Promise<void> {
  await mkdir(join(root, 'src', 'b'), { recursive: true });
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(join(root, 'addons', 'lib'), { recursive: true });
  await writeFile(join(root, 'src', 'a.ts'), 'export const a = 1;\n');
  await writeFile(join(root, 'src', 'b', 'c.ts'), 'export const c = 2;\n');
  await writeFile(join(root, 'bin', 'entry.js'), '#!/usr/bin/env node\n');
  await writeFile(join(root, 'addons', 'lib', 'libx.so'), Buffer.alloc(3 << 20, 7)); // spans read chunks
  await writeFile(join(root, 'node-exe'), Buffer.from('fake node executable'));
}

function options(root: string) {
  return {
    appRoot: root,
    execPath: join(root, 'node-exe'),
    nativeAddons: [{ path: join(root, 'addons'), label: 'addons' }],
  };
}

describe('measureCode', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mesh-measure-'));
    await makeApp(join(dir, 'one'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('hashes files exactly like a one-shot SHA-256, including multi-chunk files', async () => {
    const file = join(dir, 'one', 'addons', 'lib', 'libx.so');
    const r = await sha256File(file);
    assert.equal(r.bytes, 3 << 20);
    assert.equal(
      r.sha256,
      createHash('sha256')
        .update(Buffer.alloc(3 << 20, 7))
        .digest('hex'),
    );
  });

  it('is deterministic, covers every part, and follows the documented combination', async () => {
    const m1 = await measureCode(options(join(dir, 'one')));
    const m2 = await measureCode(options(join(dir, 'one')));
    assert.equal(m1.binaryHash, m2.binaryHash);
    assert.match(m1.binaryHash, /^[0-9a-f]{64}$/);
    assert.equal(m1.mode, 'source');
    assert.deepEqual(
      m1.parts.map((p) => [p.role, p.path]),
      [
        ['application', 'bin/entry.js'],
        ['application', 'src/a.ts'],
        ['application', 'src/b/c.ts'],
        ['native-addon', 'addons/lib/libx.so'],
        ['node-executable', 'node'],
      ],
    );
    const lines = m1.parts.map((p) => `${p.role} ${p.path} ${p.sha256}\n`).sort();
    const expected = createHash('sha256')
      .update(`mesh-llm-code-measurement-v1\n${lines.join('')}`)
      .digest('hex');
    assert.equal(m1.binaryHash, expected);
    assert.equal(combineParts([...m1.parts].reverse()), m1.binaryHash, 'order-independent');
  });

  it('does not depend on where the installation lives', async () => {
    await cp(join(dir, 'one'), join(dir, 'two'), { recursive: true });
    const a = await measureCode(options(join(dir, 'one')));
    const b = await measureCode(options(join(dir, 'two')));
    assert.equal(a.binaryHash, b.binaryHash);
    assert.notEqual(a.parts[0]!.file, b.parts[0]!.file);
  });

  it('changes when any measured file changes, or a file is added', async () => {
    const root = join(dir, 'three');
    await cp(join(dir, 'one'), root, { recursive: true });
    const base = (await measureCode(options(root))).binaryHash;
    for (const [file, content] of [
      ['src/a.ts', 'export const a = 2;\n'],
      ['bin/entry.js', '#!/usr/bin/env node\n// changed\n'],
      ['addons/lib/libx.so', 'patched'],
      ['node-exe', 'another node'],
      ['src/new.ts', 'export {};\n'],
    ] as const) {
      await writeFile(join(root, file), content);
      const now = (await measureCode(options(root))).binaryHash;
      assert.notEqual(now, base, `${file} change must change the hash`);
    }
  });

  it('measures a bundle instead of src/ when running from one', async () => {
    const root = join(dir, 'one');
    const bundlePath = join(root, 'bin', 'entry.js');
    const m = await measureCode({ ...options(root), bundlePath });
    assert.equal(m.mode, 'bundle');
    assert.deepEqual(
      m.parts.filter((p) => p.role === 'application').map((p) => p.path),
      ['entry.js'],
    );
  });

  it('finds the real native addons of this installation', async () => {
    const m = await measureCode();
    const addons = m.parts.filter((p) => p.role === 'native-addon').map((p) => p.path);
    assert.ok(
      addons.some((p) => p.endsWith('llama-addon.node')),
      'node-llama-cpp addon',
    );
    assert.ok(
      addons.some((p) => p.includes('libllama')),
      'llama shared library',
    );
    assert.ok(
      addons.some((p) => p.endsWith('koffi.node')),
      'koffi addon',
    );
    assert.ok(
      addons.some((p) => p.endsWith('sodium-native.node')),
      'sodium-native addon',
    );
    assert.ok(m.parts.some((p) => p.role === 'node-executable' && p.file === process.execPath));
    assert.ok(!m.parts.some((p) => p.path.endsWith('.gguf')), 'model weights are not measured');
  });

  it('fails with an error (not a crash) when a part is unreadable', async () => {
    await assert.rejects(
      measureCode({ ...options(join(dir, 'one')), execPath: join(dir, 'missing') }),
      /ENOENT/,
    );
  });
});

describe('measureCode: the node-llama-cpp binary actually loaded', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mesh-measure-llama-'));
    await mkdir(join(root, 'src'), { recursive: true });
    await writeFile(join(root, 'src', 'a.ts'), 'a');
    await writeFile(join(root, 'node'), 'node binary');
    const pkg = async (name: string, file?: string) => {
      const dir = join(root, 'node_modules', name);
      await mkdir(join(dir, 'bins'), { recursive: true });
      await writeFile(join(dir, 'package.json'), '{}');
      if (file) await writeFile(join(dir, 'bins', file), name);
    };
    await pkg('node-llama-cpp');
    await pkg('@node-llama-cpp/linux-x64', 'llama-addon.node');
    await pkg('@node-llama-cpp/linux-x64-vulkan', 'llama-addon.node');
    await pkg('@node-llama-cpp/linux-x64-cuda', 'llama-addon.node');
    await pkg('@node-llama-cpp/linux-x64-cuda-ext', 'libggml-cuda.so');
  });
  after(() => rm(root, { recursive: true, force: true }));

  const addons = async (llamaGpu: LlamaBinaryKind) =>
    (
      await measureCode({
        appRoot: root,
        execPath: join(root, 'node'),
        platform: 'linux',
        arch: 'x64',
        llamaGpu,
      })
    ).parts
      .filter((p) => p.role === 'native-addon')
      .map((p) => p.path);

  it('measures the package of the GPU kind in use, not the CPU one', async () => {
    assert.deepEqual(await addons('cpu'), ['@node-llama-cpp/linux-x64/bins/llama-addon.node']);
    assert.deepEqual(await addons('vulkan'), ['@node-llama-cpp/linux-x64-vulkan/bins/llama-addon.node']);
    assert.deepEqual(await addons('cuda'), [
      '@node-llama-cpp/linux-x64-cuda-ext/bins/libggml-cuda.so',
      '@node-llama-cpp/linux-x64-cuda/bins/llama-addon.node',
    ]);
  });

  it('names packages as node-llama-cpp does', () => {
    assert.deepEqual(llamaBinaryPackages('darwin', 'arm64', 'metal'), ['@node-llama-cpp/mac-arm64-metal']);
    assert.deepEqual(llamaBinaryPackages('darwin', 'x64', 'cpu'), ['@node-llama-cpp/mac-x64']);
    assert.deepEqual(llamaBinaryPackages('win32', 'x64', 'vulkan'), ['@node-llama-cpp/win-x64-vulkan']);
  });
});
