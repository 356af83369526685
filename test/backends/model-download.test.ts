import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { BIN, NODE_FLAGS } from '../../bench/lib/node-process.ts';
import { buildTinyGguf } from '../../src/backends/gguf/tiny-model.ts';
import { listCachedModels, removeCachedModel, resolveModelFile } from '../../src/backends/models/store.ts';
import { ConfigError } from '../../src/errors.ts';
import { TestCluster } from '../helpers/cluster.ts';

/**
 * A loopback mirror with Hugging Face's layout: /OWNER/REPO/resolve/main/FILE (Range requests,
 * the file's sha256 as X-Linked-Etag) and /api/models/OWNER/REPO (the file list). It can cut a
 * transfer mid-file or publish a wrong checksum.
 */
class Mirror {
  readonly file = buildTinyGguf({ seed: 7 });
  readonly sha256 = createHash('sha256').update(this.file).digest('hex');
  readonly requests: { path: string; headers: IncomingHttpHeaders }[] = [];
  /** Cut the next this-many file transfers after half the body. */
  cuts = 0;
  publishedSha = this.sha256;
  #server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0]!;
      this.requests.push({ path, headers: req.headers });
      if (path === '/org/repo/api-listing' || path === '/api/models/org/repo') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            siblings: [
              { rfilename: 'README.md' },
              { rfilename: 'tiny-F16.gguf', lfs: { sha256: 'f'.repeat(64) } },
              { rfilename: 'tiny-Q8_0.gguf', lfs: { sha256: this.sha256 } },
              { rfilename: 'tiny-Q8_0-00001-of-00002.gguf' },
            ],
          }),
        );
        return;
      }
      if (!/^\/org\/repo\/resolve\/main\/tiny(-Q8_0)?\.gguf$/.test(path)) {
        res.writeHead(404).end();
        return;
      }
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const start = range ? Number(range[1]) : 0;
      const body = this.file.subarray(start);
      const headers = {
        'content-type': 'application/octet-stream',
        'content-length': String(body.byteLength),
        'x-linked-etag': `"${this.publishedSha}"`,
        'accept-ranges': 'bytes',
      };
      if (range) {
        res.writeHead(206, {
          ...headers,
          'content-range': `bytes ${start}-${this.file.length - 1}/${this.file.length}`,
        });
      } else res.writeHead(200, headers);
      if (this.cuts > 0) {
        this.cuts--;
        res.write(body.subarray(0, Math.floor(body.byteLength / 2)), () => res.socket?.destroy());
        return;
      }
      res.end(body);
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  fileRequests() {
    return this.requests.filter((r) => r.path.includes('/resolve/'));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server?.close(() => resolve()) ?? resolve());
  }
}

async function sha256Of(path: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

describe('models by reference: download into <data-dir>/models/', () => {
  const mirror = new Mirror();
  let root: string;
  let n = 0;
  const dataDir = () => join(root, `data-${++n}`);
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mesh-llm-models-'));
    await mirror.start();
  });
  after(async () => {
    await mirror.close();
    await rm(root, { recursive: true, force: true });
  });

  test('fresh download, verified against the published sha256; a second start makes no request', async () => {
    const dir = dataDir();
    const progress: number[] = [];
    const options = {
      dataDir: dir,
      mirror: mirror.url,
      onProgress: (_: string, p: { received: number }) => progress.push(p.received),
    };
    const path = await resolveModelFile('hf:org/repo/tiny.gguf', options);
    assert.equal(path, join(dir, 'models', 'hf', 'org', 'repo', 'tiny.gguf'));
    assert.equal(await sha256Of(path), mirror.sha256);
    assert.equal(progress.at(-1), mirror.file.byteLength);
    const before = mirror.requests.length;
    assert.equal(await resolveModelFile('hf:org/repo/tiny.gguf', options), path);
    assert.equal(mirror.requests.length, before, 'the cached model is used without a request');
    const [listed] = await listCachedModels(dir);
    assert.equal(listed?.id, 'hf/org/repo/tiny.gguf');
    assert.equal(listed?.sha256, mirror.sha256);
    assert.equal(listed?.source, 'hf:org/repo/tiny.gguf');
  });

  test('a transfer cut mid-file is resumed with a Range request', async () => {
    const dir = dataDir();
    mirror.cuts = 1;
    const from = mirror.fileRequests().length;
    const path = await resolveModelFile(`${mirror.url}/org/repo/resolve/main/tiny.gguf`, { dataDir: dir });
    assert.equal(await sha256Of(path), mirror.sha256);
    const transfers = mirror.fileRequests().slice(from);
    assert.equal(transfers.length, 2);
    assert.equal(transfers[0]!.headers.range, undefined);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(transfers[1]!.headers.range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt < mirror.file.byteLength, `resumed at ${resumedAt}`);
  });

  test('a download interrupted in one run resumes in the next; nothing half-written is loadable', async () => {
    const dir = dataDir();
    const abort = new AbortController();
    const source = 'hf:org/repo/tiny.gguf';
    mirror.cuts = 1;
    await assert.rejects(
      resolveModelFile(source, {
        dataDir: dir,
        mirror: mirror.url,
        onProgress: (_, p) => {
          if (p.received > 0) abort.abort(new Error('stopped by the operator'));
        },
        signal: abort.signal,
      }),
    );
    const folder = join(dir, 'models', 'hf', 'org', 'repo');
    const files = await readdir(folder);
    assert.ok(!files.includes('tiny.gguf'), 'only the .part file exists');
    assert.ok(files.includes('tiny.gguf.part'));
    assert.deepEqual(await listCachedModels(dir), []);
    const partial = (await stat(join(folder, 'tiny.gguf.part'))).size;
    const from = mirror.fileRequests().length;
    const path = await resolveModelFile(source, { dataDir: dir, mirror: mirror.url });
    assert.equal(await sha256Of(path), mirror.sha256);
    const [resumed] = mirror.fileRequests().slice(from);
    assert.equal(resumed?.headers.range, `bytes=${partial}-`);
  });

  test('a checksum mismatch is refused and leaves no file', async () => {
    const dir = dataDir();
    await assert.rejects(
      resolveModelFile(`hf:org/repo/tiny.gguf#sha256=${'0'.repeat(64)}`, {
        dataDir: dir,
        mirror: mirror.url,
      }),
      (err: Error) => err instanceof ConfigError && /checksum mismatch/.test(err.message),
    );
    mirror.publishedSha = 'a'.repeat(64);
    try {
      await assert.rejects(
        resolveModelFile('hf:org/repo/tiny.gguf', { dataDir: dir, mirror: mirror.url }),
        /checksum mismatch \(expected sha256 a{64}/,
      );
    } finally {
      mirror.publishedSha = mirror.sha256;
    }
    assert.deepEqual(await readdir(join(dir, 'models', 'hf', 'org', 'repo')), []);
    // The right pinned checksum passes.
    const path = await resolveModelFile(`hf:org/repo/tiny.gguf#sha256=${mirror.sha256}`, {
      dataDir: dir,
      mirror: mirror.url,
    });
    assert.equal(await sha256Of(path), mirror.sha256);
  });

  test('hf:OWNER/REPO:QUANT picks the single-file GGUF of that quantization; rm removes it', async () => {
    const dir = dataDir();
    const path = await resolveModelFile('hf:org/repo:Q8_0', { dataDir: dir, mirror: mirror.url });
    assert.equal(path, join(dir, 'models', 'hf', 'org', 'repo', 'tiny-Q8_0.gguf'));
    const before = mirror.requests.length;
    assert.equal(await resolveModelFile('hf:org/repo:q8_0', { dataDir: dir, mirror: mirror.url }), path);
    assert.equal(mirror.requests.length, before, 'no listing or download for a cached quant');
    await assert.rejects(
      resolveModelFile('hf:org/repo:Q2_K', { dataDir: dir, mirror: mirror.url }),
      /no single-file Q2_K GGUF/,
    );
    const removed = await removeCachedModel(dir, 'hf/org/repo/tiny-Q8_0.gguf');
    assert.equal(removed.path, path);
    assert.deepEqual(await listCachedModels(dir), []);
    await assert.rejects(removeCachedModel(dir, 'hf/org/repo/tiny-Q8_0.gguf'), /no cached model/);
  });

  test('bad sources are refused with a readable reason', async () => {
    const dir = dataDir();
    for (const [source, reason] of [
      ['hf:org', /expected hf:OWNER\/REPO\/FILE.gguf/],
      ['hf:org/repo/../x.gguf', /expected hf:OWNER\/REPO\/FILE.gguf/],
      ['https://example.invalid/model.bin', /must name a .gguf file/],
      ['hf:org/repo/tiny.gguf#md5=00', /#sha256=<64 hex digits>/],
    ] as const) {
      await assert.rejects(resolveModelFile(source, { dataDir: dir, mirror: mirror.url }), reason);
    }
    await assert.rejects(
      resolveModelFile('hf:org/repo/missing.gguf', { dataDir: dir, mirror: mirror.url }),
      /the server answered 404/,
    );
  });
});

describe('a node serving a model by reference', () => {
  const mirror = new Mirror();
  const cluster = new TestCluster();
  before(() => mirror.start());
  after(async () => {
    await cluster.stopAll();
    await mirror.close();
  });

  test('downloads it once through --model-mirror, logs progress, and serves it by its file stem', async () => {
    const dataDir = join(await cluster.root(), 'by-ref');
    const config = {
      dataDir,
      modelMirror: mirror.url,
      models: [{ source: 'hf:org/repo/tiny.gguf', threads: 1, contextSize: 256 }],
    };
    const node = await cluster.start('by-ref', config);
    assert.deepEqual(
      node.status().node.hosting?.models.map((m) => m.name),
      ['tiny'],
    );
    const res = await fetch(`${node.apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    });
    assert.equal(res.status, 200);
    const logs = cluster.logs.get('by-ref')!.join('');
    assert.match(logs, /"msg":"download progress"/);
    assert.match(logs, /"msg":"model downloaded"/);
    await cluster.stopNode(node);

    const before = mirror.requests.length;
    const again = await cluster.start('by-ref-again', config);
    assert.equal(mirror.requests.length, before, 'the second start makes no request');
    assert.deepEqual(
      again.status().node.hosting?.models.map((m) => m.name),
      ['tiny'],
    );
  });
});

describe('mesh-llm models list | pull | rm', () => {
  const mirror = new Mirror();
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mesh-llm-models-cli-'));
    await mirror.start();
  });
  after(async () => {
    await mirror.close();
    await rm(dir, { recursive: true, force: true });
  });
  const cli = (...args: string[]) =>
    promisify(execFile)(process.execPath, [...NODE_FLAGS, BIN, 'models', ...args, '--data-dir', dir], {
      env: { ...process.env, MESH_LLM_MODEL_MIRROR: mirror.url },
    });

  test('pulls through the mirror from the environment, lists, removes', async () => {
    const pulled = await cli('pull', 'hf:org/repo/tiny.gguf');
    assert.equal(pulled.stdout.trim(), join(dir, 'models', 'hf', 'org', 'repo', 'tiny.gguf'));
    assert.match(pulled.stderr, /download progress/, 'log lines when stderr is not a terminal');
    const listed = JSON.parse((await cli('list', '--json')).stdout) as { id: string; sha256: string }[];
    assert.deepEqual(
      listed.map((m) => [m.id, m.sha256]),
      [['hf/org/repo/tiny.gguf', mirror.sha256]],
    );
    assert.equal((await cli('rm', 'hf/org/repo/tiny.gguf')).stdout.trim(), 'removed hf/org/repo/tiny.gguf');
    assert.equal((await cli('list')).stdout.trim(), 'no downloaded models');
    await assert.rejects(cli('rm', 'nothing'), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, /no cached model 'nothing'/);
      return true;
    });
  });
});
