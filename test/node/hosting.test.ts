import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import OpenAI from 'openai';
import { writeTinyGguf } from '../../src/backends/gguf/tiny-model.ts';
import { serveConfigFromArgs } from '../../src/cli/commands/serve.ts';
import { formatStatus } from '../../src/cli/commands/status.ts';
import { ConfigError } from '../../src/errors.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import type { StatusReport } from '../../src/node/status.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { startFakeOpenAi } from '../helpers/fake-openai-server.ts';

async function consoleStatus(node: MeshNode): Promise<StatusReport> {
  const res = await fetch(`${node.consoleUrl}/api/status`);
  assert.equal(res.status, 200);
  return (await res.json()) as StatusReport;
}

async function chat(openai: OpenAI, model: string) {
  return openai.chat.completions
    .create({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 6 })
    .withResponse();
}

describe('hosting several models on one node', () => {
  const cluster = new TestCluster();
  after(() => cluster.stopAll());

  test('two in-process models, each routed by name through a remote node; a too-big one refused', async () => {
    const dir = join(await cluster.root(), 'models');
    const first = join(dir, 'alpha.gguf');
    const second = join(dir, 'beta.gguf');
    // Declares ~270 GiB of f32 weights (the data is a sparse hole): more than this machine has.
    const huge = join(dir, 'huge.gguf');
    await writeTinyGguf(first, { seed: 1 });
    await writeTinyGguf(second, { seed: 2 });
    await writeTinyGguf(huge, {
      headerOnly: true,
      shape: { embedding: 8192, layers: 64, feedForward: 32768 },
    });
    const common = { threads: 1, contextSize: 256, parallel: 2 };
    const host = await cluster.start('host', {
      models: [
        { source: first, ...common },
        { source: huge, name: 'huge', ...common },
        { source: second, name: 'second', ...common },
      ],
    });
    const client = await cluster.start('client', { client: true, join: [host.mesh.inviteToken()] });
    await waitUntil(() => seesModel(client, 'alpha') && seesModel(client, 'second'), 'both models');

    const openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    for (const model of ['alpha', 'second']) {
      const { data, response } = await chat(openai, model);
      assert.equal(data.model, model);
      assert.equal(response.headers.get('x-mesh-host'), host.endpointId);
      assert.ok((data.usage?.completion_tokens ?? 0) > 0);
    }
    await assert.rejects(chat(openai, 'huge'), (err: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(err.status, 404);
      return true;
    });

    const status = await consoleStatus(host);
    const hosting = status.node.hosting;
    assert.ok(hosting);
    assert.deepEqual(hosting.models.map((m) => m.name).sort(), ['alpha', 'second']);
    for (const m of hosting.models) {
      assert.equal(m.backend, 'llama-cpp');
      assert.equal(m.ready, true);
      assert.ok((m.layerCount ?? 0) > 0);
    }
    assert.equal(hosting.refused.length, 1);
    assert.equal(hosting.refused[0]!.name, 'huge');
    assert.match(hosting.refused[0]!.reason, /needs about [\d.]+ GiB of RAM but [\d.]+ GiB is available/);
    assert.ok(hosting.memoryBytes > 0 && hosting.cpuCores > 0);
    assert.match(formatStatus(status), /refused huge: The model 'huge' needs about/);

    // The client sees the host's hardware as announced (field 33 and field 16).
    const clientStatus = await consoleStatus(client);
    const peer = clientStatus.peers.find((p) => p.id === host.endpointId);
    assert.ok(peer?.hardware);
    assert.equal(peer.hardware.gpuKind, hosting.gpu?.kind);
    assert.equal(peer.hardware.cpuCores, hosting.cpuCores);
    assert.equal(peer.hardware.memoryBytes, hosting.memoryBytes);
    assert.match(
      formatStatus(clientStatus),
      new RegExp(`${hosting.gpu?.kind} [\\d.]+ GiB ${hosting.cpuCores}c`),
    );
  });

  test('a node asked only for a model that does not fit refuses to start, saying why', async () => {
    const huge = join(await cluster.root(), 'models', 'huge-only.gguf');
    await writeTinyGguf(huge, {
      headerOnly: true,
      shape: { embedding: 8192, layers: 64, feedForward: 32768 },
    });
    await assert.rejects(
      cluster.start('too-big', { models: [{ source: huge, threads: 1, contextSize: 256 }] }),
      (err: Error) => err instanceof ConfigError && /needs about .* of RAM/.test(err.message),
    );
  });

  test('--model-memory caps what the models may use together', async () => {
    const path = join(await cluster.root(), 'models', 'capped.gguf');
    await writeTinyGguf(path, { seed: 3 });
    await assert.rejects(
      cluster.start('capped', {
        models: [{ source: path, threads: 1, contextSize: 256 }],
        modelMemoryBytes: 64 * 1024,
      }),
      /needs about .* of RAM but 64\.0 KiB is available/,
    );
  });
});

describe('the GPU choice on this machine', () => {
  const cluster = new TestCluster();
  after(() => cluster.stopAll());

  test('--gpu off and --gpu auto are reported as they ran', async () => {
    const model = await cluster.tinyModel();
    for (const gpu of ['off', 'auto'] as const) {
      const node = await cluster.start(`gpu-${gpu}`, {
        gpu,
        models: [{ source: model, name: `tiny-${gpu}`, threads: 1, contextSize: 256 }],
      });
      const hosting = (await consoleStatus(node)).node.hosting;
      assert.ok(hosting?.gpu);
      assert.equal(hosting.gpu.requested, gpu);
      const model0 = hosting.models[0]!;
      if (gpu === 'off' || hosting.gpu.kind === 'cpu') {
        assert.equal(hosting.gpu.kind, 'cpu');
        assert.equal(model0.gpuLayers, 0);
        // auto on a machine without a GPU says why it runs on the CPU; off needs no reason.
        if (gpu === 'auto') assert.match(hosting.gpu.fallbackReason ?? '', /\S/);
        else assert.equal(hosting.gpu.fallbackReason, null);
      } else {
        assert.ok((model0.gpuLayers ?? 0) > 0);
        assert.ok(hosting.gpu.vramBytes > 0);
      }
      await cluster.stopNode(node);
    }
  });

  test('an explicit GPU kind this machine cannot run is a clear error, not a silent CPU run', async () => {
    const { llamaRuntime } = await import('../../src/backends/llama/runtime.ts');
    const auto = await llamaRuntime('auto');
    for (const kind of ['cuda', 'vulkan', 'metal'] as const) {
      if (auto.kind === kind) continue; // this machine has it
      await assert.rejects(
        llamaRuntime(kind),
        (err: Error) =>
          err instanceof ConfigError &&
          err.message.startsWith(`--gpu ${kind}: `) &&
          /--gpu auto/.test(err.message),
      );
    }
  });

  test('flags: --gpu, --gpu-layers, --model NAME=SOURCE, --model-memory', () => {
    const config = serveConfigFromArgs([
      '--gpu',
      'off',
      '--gpu-layers',
      'max',
      '--model',
      'a=/models/x.gguf',
      '--model',
      '/models/y.gguf',
      '--model',
      'hf:org/repo/file.gguf',
      '--model-memory',
      '12G',
    ])!;
    assert.equal(config.gpu, 'off');
    assert.equal(config.gpuLayers, 'max');
    assert.deepEqual(
      config.models?.map((m) => [m.name, m.source]),
      [
        ['a', '/models/x.gguf'],
        [undefined, '/models/y.gguf'],
        [undefined, 'hf:org/repo/file.gguf'],
      ],
    );
    assert.equal(config.modelMemoryBytes, 12 * 2 ** 30);
    assert.equal(serveConfigFromArgs([])!.gpu, 'auto');
    assert.throws(() => serveConfigFromArgs(['--gpu', 'tpu']), /--gpu must be one of auto, cuda/);
    assert.throws(() => serveConfigFromArgs(['--gpu-layers', 'some']), /--gpu-layers must be/);
    assert.throws(() => serveConfigFromArgs(['--model-memory', 'lots']), /--model-memory must be a size/);
    assert.throws(
      () => serveConfigFromArgs(['--model', 'a.gguf', '--model', 'b.gguf', '--model-name', 'x']),
      /--model-name names a single --model/,
    );
  });
});

describe('pass-through backend serving every model its upstream lists', () => {
  const cluster = new TestCluster();
  const fakes: Awaited<ReturnType<typeof startFakeOpenAi>>[] = [];
  after(async () => {
    await cluster.stopAll();
    for (const fake of fakes) await fake.close();
  });

  test('two upstream models listed and routed through a remote node; the list is re-read', async () => {
    const seen: string[] = [];
    const models = ['upstream-a', 'upstream-b'];
    const fake = await startFakeOpenAi({
      models,
      onRequest: (body) => seen.push((body as { model: string }).model),
    });
    fakes.push(fake);
    const host = await cluster.start('pass-host', { backend: { url: fake.url, refreshMs: 200 } });
    const client = await cluster.start('pass-client', { client: true, join: [host.mesh.inviteToken()] });
    await waitUntil(() => seesModel(client, 'upstream-a') && seesModel(client, 'upstream-b'), 'both');
    const openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    const listed = (await openai.models.list()).data.map((m) => m.id);
    assert.ok(listed.includes('upstream-a') && listed.includes('upstream-b'));
    for (const model of models) {
      const { data, response } = await chat(openai, model);
      assert.equal(data.model, model);
      assert.equal(response.headers.get('x-mesh-host'), host.endpointId);
    }
    assert.deepEqual(seen, models);

    // The upstream starts serving a third model: the host re-reads the list and announces it.
    models.push('upstream-c');
    await waitUntil(() => seesModel(client, 'upstream-c'), 'the new upstream model to be announced');
    assert.equal((await chat(openai, 'upstream-c')).data.model, 'upstream-c');
  });

  test('--backend-model narrows what is served', async () => {
    const fake = await startFakeOpenAi({ models: ['keep', 'drop'] });
    fakes.push(fake);
    const host = await cluster.start('narrow-host', { backend: { url: fake.url, models: ['keep'] } });
    const openai = new OpenAI({ baseURL: `${host.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    const listed = (await openai.models.list()).data.map((m) => m.id);
    assert.ok(listed.includes('keep'));
    assert.ok(!listed.includes('drop'));
    await assert.rejects(
      chat(openai, 'drop'),
      (err: InstanceType<typeof OpenAI.APIError>) => err.status === 404,
    );
  });
});
