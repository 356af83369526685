import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';

/**
 * Pooling over real nodes: hosts with a paced backend (20 tokens/s, 2 slots each, like a small
 * llama-server) and one client node that spreads streams over them.
 */
const MODEL = 'pooled';

async function stream(node: MeshNode, tokens: number, messages?: unknown[]) {
  const response = await fetch(`${node.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      messages: messages ?? [{ role: 'user', content: 'hi' }],
      stream: true,
      max_tokens: tokens,
    }),
  });
  const text = await response.text();
  return { status: response.status, host: response.headers.get('x-mesh-host') ?? '', text, response };
}

/** Remote hosts of MODEL the client knows, with their advertised slots. */
function pooledHosts(node: MeshNode): number {
  return (
    node.router
      .pools()
      .find((p) => p.name === MODEL)
      ?.hosts.filter((h) => h.slots === 2).length ?? 0
  );
}

describe('pooling: every host of a model shares the load', () => {
  const cluster = new TestCluster();
  const fakes: FakeOpenAiServer[] = [];
  const hosts: MeshNode[] = [];
  let client: MeshNode;

  const startHost = async (name: string, join: string) => {
    const fake = await startFakeOpenAi({ model: MODEL, tokens: 1000, tokenDelayMs: 50, slots: 2 });
    fakes.push(fake);
    const host = await cluster.start(name, {
      backend: { url: fake.url, model: MODEL, slots: 2 },
      join: join ? [join] : [],
    });
    hosts.push(host);
    return host;
  };

  before(async () => {
    const first = await startHost('host-1', '');
    const token = first.mesh.inviteToken();
    await startHost('host-2', token);
    await startHost('host-3', token);
    client = await cluster.start('client', { client: true, join: [token] });
    await waitUntil(() => pooledHosts(client) === 3, 'the client to see three hosts with 2 slots each');
  });
  after(async () => {
    await cluster.stopAll();
    await Promise.all(fakes.map((f) => f.close()));
  });

  test('12 concurrent streams spread over all three hosts, none takes more than 6', async () => {
    const results = await Promise.all(Array.from({ length: 12 }, () => stream(client, 20)));
    const perHost = new Map<string, number>();
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.match(r.text, /data: \[DONE\]/);
      perHost.set(r.host, (perHost.get(r.host) ?? 0) + 1);
    }
    const ids = hosts.map((h) => h.endpointId);
    assert.deepEqual(
      [...perHost.keys()].sort(),
      [...ids].sort(),
      `every host served (${[...perHost.values()].join('/')})`,
    );
    for (const [host, n] of perHost) assert.ok(n <= 6, `${host.slice(0, 12)} served ${n} of 12`);
    // No backend ever ran more than its 2 slots: the rest waited on the client, not on a host.
    for (const fake of fakes) assert.ok(fake.maxActive <= 2, `a backend ran ${fake.maxActive} at once`);
    console.log(`# 12 streams per host: ${[...perHost.values()].join(', ')}`);
  });

  test('a 4th host that joins during the run gets work within seconds', async () => {
    let running = true;
    const served: string[] = [];
    const worker = async () => {
      while (running) {
        const r = await stream(client, 20);
        assert.equal(r.status, 200);
        served.push(r.host);
      }
    };
    const workers = Array.from({ length: 12 }, worker);
    await waitUntil(() => served.length >= 12, 'the first round of streams');
    const joined = Date.now();
    const fourth = await startHost('host-4', hosts[0]!.mesh.inviteToken());
    const fake4 = fakes.at(-1)!;
    await waitUntil(() => fake4.requests > 0, 'the 4th host to get a request', 60_000);
    const firstWorkMs = Date.now() - joined;
    await waitUntil(
      () => served.filter((h) => h === fourth.endpointId).length >= 2,
      'the 4th host to finish two',
    );
    running = false;
    await Promise.all(workers);
    console.log(
      `# 4th host: first request ${firstWorkMs} ms after it started; served ${served.filter((h) => h === fourth.endpointId).length} of ${served.length}`,
    );
    assert.ok(firstWorkMs < 30_000, `the 4th host waited ${firstWorkMs} ms for work`);
  });

  test('/api/status shows per model hosts, slots, in flight, queued, served per minute', async () => {
    const status = (await (await fetch(`${client.consoleUrl}/api/status`)).json()) as {
      models: Array<{ name: string; waiting: number; hosts: Array<Record<string, unknown>> }>;
    };
    const pool = status.models.find((m) => m.name === MODEL);
    assert.ok(pool, 'the pooled model is listed');
    assert.equal(pool.hosts.length, 4);
    for (const host of pool.hosts) {
      assert.equal(host.slots, 2);
      assert.equal(typeof host.inFlight, 'number');
      assert.equal(typeof host.queued, 'number');
      assert.ok((host.servedPerMinute as number) > 0, 'each host served within the last minute');
    }
  });
});
