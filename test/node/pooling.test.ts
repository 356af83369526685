import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { formatStatus } from '../../src/cli/commands/status.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import type { StatusReport } from '../../src/node/status.ts';
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
      if (!/data: \[DONE\]/.test(r.text)) {
        for (const [name, lines] of cluster.logs)
          for (const l of lines) if (/"level":(40|50)/.test(l)) console.log(`# DIAG ${name} ${l.trim()}`);
      }
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
    const fourth = await startHost('host-4', hosts[0]!.mesh.inviteToken());
    const joined = Date.now(); // the node is up and has dialled the mesh
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
      `# 4th host: first request ${firstWorkMs} ms after it was up; served ${served.filter((h) => h === fourth.endpointId).length} of ${served.length}`,
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
    // `mesh-llm status` prints the same as a table: one row per host of the model.
    const table = formatStatus(status as unknown as StatusReport);
    assert.match(table, /model\s+host\s+slots\s+in flight\s+queued\s+served\/min/);
    assert.equal(table.split('\n').filter((l) => / 2 {2,}\d+ {2,}\d+ {2,}\d+$/.test(l)).length, 4);
  });
});

describe('pooling: affinity, no_capacity failover and backpressure', () => {
  const cluster = new TestCluster();
  const fakes: FakeOpenAiServer[] = [];
  let tight: MeshNode;
  let roomy: MeshNode;
  let client: MeshNode;

  before(async () => {
    // "tight" says it has 2 slots but its backend runs 1 and refuses the rest (429).
    const tightFake = await startFakeOpenAi({
      model: MODEL,
      tokens: 1000,
      tokenDelayMs: 50,
      slots: 1,
      rejectWhenFull: 30,
    });
    const roomyFake = await startFakeOpenAi({ model: MODEL, tokens: 1000, tokenDelayMs: 50, slots: 2 });
    fakes.push(tightFake, roomyFake);
    tight = await cluster.start('tight', { backend: { url: tightFake.url, model: MODEL, slots: 2 } });
    const token = tight.mesh.inviteToken();
    roomy = await cluster.start('roomy', {
      backend: { url: roomyFake.url, model: MODEL, slots: 2 },
      join: [token],
    });
    client = await cluster.start('client', { client: true, join: [token], queueTimeoutMs: 1_500 });
    await waitUntil(() => pooledHosts(client) === 2, 'the client to see both hosts');
  });
  after(async () => {
    await cluster.stopAll();
    await Promise.all(fakes.map((f) => f.close()));
  });

  test('the next turns of a conversation go to the host that served the first', async () => {
    for (let c = 0; c < 4; c++) {
      const messages: unknown[] = [
        { role: 'system', content: `conversation ${c}` },
        { role: 'user', content: 'first question' },
      ];
      const first = await stream(client, 2, messages);
      assert.equal(first.status, 200);
      for (let turn = 2; turn <= 3; turn++) {
        messages.push(
          { role: 'assistant', content: 'an answer' },
          { role: 'user', content: `question ${turn}` },
        );
        const next = await stream(client, 2, messages);
        assert.equal(next.status, 200);
        assert.equal(next.host, first.host, `turn ${turn} of conversation ${c} stayed on its host`);
      }
    }
  });

  test('a host answering 429 is passed over and the request goes to the next host', async () => {
    // Tight's only real slot is taken behind its node's back (it still reports 0 of 2 in use);
    // roomy runs one stream through its node (1 of 2), so tight looks the better choice.
    const post = (url: string) =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: MODEL,
          messages: [{ role: 'user', content: 'x' }],
          stream: true,
          max_tokens: 60,
        }),
      });
    const occupy = [post(fakes[0]!.url), post(roomy.apiUrl)];
    await waitUntil(() => fakes[0]!.active === 1 && fakes[1]!.active === 1, 'both hosts to be busy');
    await waitUntil(
      () => client.router.load.estimate(roomy.endpointId, MODEL, undefined).load === 1,
      "roomy's report to reach the client",
    );
    const refusedBefore = fakes[0]!.requests;
    const passOvers: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await stream(client, 2);
      assert.equal(r.status, 200);
      passOvers.push(r.host);
    }
    assert.ok(
      passOvers.every((h) => h === roomy.endpointId),
      'every request ended on the host with room',
    );
    assert.ok(fakes[0]!.requests > refusedBefore, 'tight was asked and refused');
    assert.ok(client.router.load.passedOver(tight.endpointId, MODEL), 'tight is passed over for a while');
    for (const r of await Promise.all(occupy)) await r.text();
  });
});

describe('pooling: backpressure when every host is full', () => {
  const cluster = new TestCluster();
  let fake: FakeOpenAiServer;
  let client: MeshNode;

  before(async () => {
    fake = await startFakeOpenAi({ model: MODEL, tokens: 1000, tokenDelayMs: 50, slots: 1 });
    const host = await cluster.start('single', { backend: { url: fake.url, model: MODEL, slots: 1 } });
    client = await cluster.start('client', {
      client: true,
      join: [host.mesh.inviteToken()],
      queueTimeoutMs: 3_000,
    });
    await waitUntil(
      () => client.router.pools().find((p) => p.name === MODEL)?.hosts[0]?.slots === 1,
      'the client to see the host and its single slot',
    );
  });
  after(async () => {
    await cluster.stopAll();
    await fake.close();
  });

  test('a request waits on the client while the host is full, then runs', async () => {
    const first = stream(client, 20); // about 1 s
    await waitUntil(() => fake.active === 1, 'the slot to be taken');
    const second = await stream(client, 2);
    assert.equal(second.status, 200);
    assert.equal((await first).status, 200);
    assert.equal(fake.maxActive, 1, 'the host never got more than its one slot');
  });

  test('past the wait: 429 with Retry-After in the OpenAI error shape', async () => {
    const busy = stream(client, 120); // about 6 s
    await waitUntil(() => fake.active === 1, 'the slot to be taken');
    const started = Date.now();
    const refused = await fetch(`${client.apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'late' }] }),
    });
    const waited = Date.now() - started;
    assert.equal(refused.status, 429);
    assert.match(refused.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
    const body = (await refused.json()) as {
      error: { code: string; type: string; message: string; param: null };
    };
    assert.equal(body.error.code, 'all_hosts_busy');
    assert.equal(body.error.type, 'rate_limit_error');
    assert.equal(body.error.param, null);
    assert.ok(waited >= 2_900, `it waited ${waited} ms first`);
    assert.equal(client.router.queue.waiting, 0);
    assert.equal((await busy).status, 200);
  });
});
