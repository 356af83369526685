import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import parsePrometheusTextFormat, { type PrometheusFamily } from 'parse-prometheus-text-format';
import { buildConsole } from '../../scripts/build-console.ts';
import { E2E_MAGIC } from '../../src/crypto/envelope.ts';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';

const PROMPT = 'a secret prompt that must never become a label';

async function scrape(node: MeshNode): Promise<{ text: string; families: Map<string, PrometheusFamily> }> {
  const res = await fetch(`${node.consoleUrl}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  return { text, families: new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f])) };
}

/** The value of the sample whose labels include `labels` (0 when there is none yet). */
function sample(
  families: Map<string, PrometheusFamily>,
  name: string,
  labels: Record<string, string>,
  field: 'value' | 'count' | 'sum' = 'value',
): number {
  const family = families.get(name);
  const match = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return Number(match?.[field] ?? 0);
}

async function chat(node: MeshNode, body: Record<string, unknown>): Promise<Response> {
  const res = await fetch(`${node.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: PROMPT }], ...body }),
  });
  await res.arrayBuffer();
  return res;
}

describe('/metrics on the console port', () => {
  const cluster = new TestCluster();
  let backend: FakeOpenAiServer;
  let host: MeshNode;
  let client: MeshNode;

  before(async () => {
    await buildConsole();
    backend = await startFakeOpenAi({ model: 'metered', tokens: 7 });
    host = await cluster.start('host', { backend: { url: backend.url, model: 'metered' } });
    client = await cluster.start('client', { client: true, join: [host.mesh.inviteToken()] });
    await waitUntil(() => seesModel(client, 'metered'), 'client to learn the host');
  });
  after(async () => {
    await cluster.stopAll();
    await backend.close();
  });

  test('parses as Prometheus text; request, latency, TTFT and token counters move with requests', async () => {
    const before = await scrape(client);
    const labels = { model: 'metered', route: 'direct', status: '200' };
    const base = sample(before.families, 'mesh_llm_requests_total', labels);

    for (let i = 0; i < 3; i++)
      assert.equal((await chat(client, { model: 'metered', stream: true, max_tokens: 5 })).status, 200);
    assert.equal((await chat(client, { model: 'metered', max_tokens: 5 })).status, 200);
    assert.equal((await chat(client, { model: 'no-such-model', max_tokens: 5 })).status, 404);

    const { text, families } = await scrape(client);
    assert.equal(sample(families, 'mesh_llm_requests_total', labels), base + 4);
    assert.equal(families.get('mesh_llm_requests_total')?.type, 'COUNTER');
    // A model nobody serves is counted, but its client-chosen name is not a label.
    assert.equal(
      sample(families, 'mesh_llm_requests_total', { model: 'unlisted', route: 'none', status: '404' }),
      1,
    );
    assert.ok(!text.includes('no-such-model'));

    // (This parser folds a labelled histogram's series into one: here there is one series each.)
    for (const name of ['mesh_llm_request_duration_seconds', 'mesh_llm_time_to_first_token_seconds']) {
      const family = families.get(name);
      assert.equal(family?.type, 'HISTOGRAM');
      assert.equal(Number(family?.metrics[0]?.buckets?.['+Inf']), 4, `${name} observed every answer`);
    }
    assert.match(text, /mesh_llm_request_duration_seconds_count\{model="metered",route="direct"\} 4\n/);
    // Streams count their content chunks (5 each); the whole answer reports usage.
    assert.ok(sample(families, 'mesh_llm_tokens_total', { model: 'metered', kind: 'completion' }) >= 15);
    assert.equal(sample(families, 'mesh_llm_requests_in_flight', { model: 'metered' }), 0);

    // Each node has its own registry: the client's requests are not in the host's counters.
    const hostSide = await scrape(host);
    assert.equal(
      sample(hostSide.families, 'mesh_llm_requests_total', { model: 'metered', route: 'local' }),
      0,
    );

    // Peers by tier and link, libp2p's own metrics (gossip bytes per protocol), process defaults.
    assert.equal(sample(families, 'mesh_llm_peers', { link: 'direct' }), 1);
    const transfer = families.get('libp2p_data_transfer_bytes_total');
    assert.ok(
      transfer?.metrics.some((m) => m.labels?.protocol?.startsWith('/mesh-llm/gossip/')),
      'gossip traffic',
    );
    assert.ok(families.has('process_cpu_user_seconds_total'));

    // Nothing secret: no prompt, mesh id, invite token or inference key anywhere in the text.
    const status = client.status();
    for (const secret of [
      PROMPT,
      status.node.meshId,
      status.node.token,
      status.node.e2e.inferencePublicKey,
    ]) {
      if (secret) assert.ok(!text.includes(secret), 'a secret leaked into /metrics');
    }
  });

  test('an envelope the host cannot open is counted by reason on the host', async () => {
    const before = sample((await scrape(host)).families, 'mesh_llm_e2e_failures_total', {
      reason: 'malformed_envelope',
      side: 'host',
    });
    const stream = await client.mesh.openStream(host.endpointId, PROTOCOL_HTTP);
    await stream.write(Uint8Array.from([E2E_MAGIC, ...Buffer.from('{"v":1,"not":"an envelope"}')]));
    await stream.closeWrite();
    // Without a key to answer with, the host resets the stream.
    await assert.rejects(async () => {
      for await (const _ of stream.source) {
        // drain
      }
    });
    await waitUntil(
      async () =>
        sample((await scrape(host)).families, 'mesh_llm_e2e_failures_total', {
          reason: 'malformed_envelope',
          side: 'host',
        }) ===
        before + 1,
      'the host to count the failure',
    );
  });

  test('/api/traffic sums the same counters per model for the console', async () => {
    const res = await fetch(`${client.consoleUrl}/api/traffic`);
    const traffic = (await res.json()) as {
      at: number;
      models: { model: string; requests: number; completionTokens: number }[];
    };
    const metered = traffic.models.find((m) => m.model === 'metered');
    assert.ok(metered && metered.requests >= 4 && metered.completionTokens >= 15);
  });

  test('the console serves its built front end with a strict CSP, and refuses foreign hosts', async () => {
    const page = await fetch(`${client.consoleUrl}/`);
    assert.equal(page.status, 200);
    const csp = page.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.ok(!csp.includes('unsafe-inline'));
    const html = await page.text();
    assert.match(html, /<script defer src="\/app.js"><\/script>/);
    assert.ok(!/<script>/.test(html), 'no inline script');
    const app = await fetch(`${client.consoleUrl}/app.js`);
    assert.equal(app.status, 200);
    assert.match(app.headers.get('content-type') ?? '', /javascript/);
    assert.equal((await fetch(`${client.consoleUrl}/../package.json`)).status, 404);
    // A DNS-rebound page (another Host) gets nothing, metrics included.
    const rebound = await new Promise<number>((resolve, reject) => {
      request(`${client.consoleUrl}/metrics`, { headers: { host: 'evil.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    assert.ok(rebound >= 400, `status ${rebound}`);
  });
});
