import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { buildConsole } from '../../scripts/build-console.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(import.meta.dirname, '..', '..', 'test-artifacts', 'console');
const XSS_NAME = '<img src=x onerror="window.__pwned=1">relay';

describe('the console in a real browser, on a 3-node mesh with a relay-only host', () => {
  const cluster = new TestCluster();
  let browser: Browser | undefined;
  let page: Page;
  let relay: MeshNode;
  let host: MeshNode;
  let client: MeshNode;
  const pageErrors: string[] = [];

  before(async () => {
    await Promise.all([buildConsole(), mkdir(ARTIFACTS, { recursive: true })]);
    relay = await cluster.start('relay', { relay: true, name: XSS_NAME });
    const token = relay.mesh.inviteToken();
    host = await cluster.start('host', {
      join: [token],
      reachableOnlyViaRelay: true,
      model: { path: await cluster.tinyModel(), name: 'tiny', threads: 1, contextSize: 256 },
    });
    client = await cluster.start('client', { client: true, join: [token] });
    await waitUntil(() => seesModel(client, 'tiny'), 'client to learn the relay-only host', 60_000);
    // One request over the relay so the client holds a (relayed) connection to the host.
    const warm = await fetch(`${client.apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    });
    assert.equal(warm.status, 200);
    assert.equal(warm.headers.get('x-mesh-path'), 'relay');
    await warm.arrayBuffer();

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1440, height: 1100 }, colorScheme: 'dark' });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
    await page.goto(client.consoleUrl!);
  });

  after(async () => {
    await browser?.close();
    await cluster.stopAll();
  });

  test('the topology shows three nodes, the relay linked directly, the host with its model', async () => {
    await page.locator('svg.topology g.node').nth(2).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('svg.topology g.node').count(), 3);
    const selfNode = page.locator('svg.topology g.node.self');
    assert.equal(await selfNode.getAttribute('data-id'), client.endpointId);
    const relayEdge = page.locator(`svg.topology path.edge[data-peer="${relay.endpointId}"]`);
    assert.equal(await relayEdge.getAttribute('data-link'), 'direct');
    assert.match(
      (await page.locator(`svg.topology g.node[data-id="${host.endpointId}"]`).textContent()) ?? '',
      /tiny/,
    );
    await page.screenshot({ path: join(ARTIFACTS, 'console.png'), fullPage: true });
  });

  test('the host reached only through the relay is drawn and listed as relayed', async () => {
    const hostEdge = page.locator(`svg.topology path.edge[data-peer="${host.endpointId}"]`);
    await waitUntil(
      async () => (await hostEdge.getAttribute('data-link')) === 'relayed',
      'host link shown as relayed',
      15_000,
    );
    assert.equal(
      await page.locator(`table.peers tr[data-peer="${host.endpointId}"] [data-link]`).textContent(),
      'relayed',
    );
    // The relay the host is reached through is drawn as one, and the link goes through it.
    assert.match(
      (await page.locator(`svg.topology g.node[data-id="${relay.endpointId}"]`).getAttribute('class')) ?? '',
      /role-relay/,
    );
    assert.match(
      (await page.locator(`table.peers tr[data-peer="${host.endpointId}"]`).textContent()) ?? '',
      /via /,
    );
  });

  test('each peer’s badges match /api/status', async () => {
    const status = (await (await fetch(`${client.consoleUrl}/api/status`)).json()) as {
      peers: {
        id: string;
        e2e: { capable: boolean };
        attestation: {
          tier: string;
          live: boolean;
          keyFingerprint: string | null;
          failureReason: string | null;
        } | null;
        posture: { plaintextBoundary: string } | null;
        policy: { refused: boolean };
      }[];
    };
    const hostStatus = status.peers.find((p) => p.id === host.endpointId)!;
    assert.ok(hostStatus.attestation, 'the client verified the host’s statement');
    await waitUntil(async () => {
      const row = page.locator(`table.peers tr[data-peer="${host.endpointId}"]`);
      return (
        (await row.locator('[data-badge="live"]').count()) === 1 || !hostStatus.attestation?.keyFingerprint
      );
    }, 'the host row to render');
    const badges = async (id: string) =>
      Object.fromEntries(
        await page
          .locator(`table.peers tr[data-peer="${id}"] [data-badge]`)
          .evaluateAll((els) => els.map((e) => [e.getAttribute('data-badge'), e.textContent])),
      ) as Record<string, string>;
    const shown = await badges(host.endpointId);
    assert.equal(shown.e2e, hostStatus.e2e.capable ? 'E2E sealed' : 'no E2E');
    assert.equal(shown.tier, hostStatus.attestation.tier);
    assert.equal(shown.plaintext, 'plaintext in-process');
    assert.equal(hostStatus.posture?.plaintextBoundary, 'in-process');
    // This client enforces no attestation policy: nothing about the host is shown as a failure.
    assert.equal(hostStatus.policy.refused, false);
    assert.equal(shown.policy === undefined || shown.policy === 'below policy (not enforced)', true);
    assert.equal(shown.failure, undefined);
    assert.equal(await page.locator(`table.peers tr[data-peer="${host.endpointId}"] .badge.bad`).count(), 0);
    // The relay serves nothing: no tier, E2E or plaintext verdicts to show.
    const relayShown = await badges(relay.endpointId);
    assert.equal(relayShown.e2e, undefined);
    assert.equal(relayShown.failure, undefined);
  });

  test('the models panel lists each host of a model with the load /api/status reports', async () => {
    const status = (await (await fetch(`${client.consoleUrl}/api/status`)).json()) as {
      models: { name: string; hosts: { id: string; slots: number | null }[] }[];
    };
    const pool = status.models.find((m) => m.name === 'tiny');
    assert.ok(pool, 'pooling reports the model');
    const row = page.locator('table.models tr[data-model="tiny"]');
    await row.waitFor();
    for (const host of pool.hosts) {
      const line = row.locator(`.host-load[data-host="${host.id}"]`);
      assert.equal(await line.count(), 1);
      if (host.slots) assert.match((await line.textContent()) ?? '', new RegExp(`/${host.slots} slots`));
    }
  });

  test('a peer name carrying markup renders as text', async () => {
    const row = page.locator(`table.peers tr[data-peer="${relay.endpointId}"] .peer-name`);
    assert.equal(await row.textContent(), XSS_NAME);
    assert.equal(await page.locator('img').count(), 0);
    assert.equal(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned), undefined);
    const svgName = page.locator(`svg.topology g.node[data-id="${relay.endpointId}"] title`).first();
    assert.equal(await svgName.textContent(), XSS_NAME);
  });

  test('the playground streams an answer and shows its route, encryption and timing', async () => {
    await page.locator('#pg-model option[value="tiny"]').waitFor({ state: 'attached' });
    await page.selectOption('#pg-model', 'tiny');
    await page.fill('#pg-max', '24');
    await page.click('#pg-send');
    await page.locator('#pg-meta [data-key="done"]').waitFor({ timeout: 60_000 });
    const meta = async (key: string) => page.locator(`#pg-meta [data-key="${key}"] .chip-v`).textContent();
    assert.equal(await meta('path'), 'relay');
    assert.match((await meta('e2e')) ?? '', /sealed end to end/);
    assert.equal(await meta('host'), 'host');
    const tokens = Number(await meta('tokens'));
    assert.ok(tokens > 1 && tokens <= 24, `streamed ${tokens} tokens`);
    assert.match((await meta('ttft')) ?? '', /\d+(\.\d+)? m?s/);
    assert.ok(((await page.locator('#pg-output').textContent()) ?? '').length > 0);
    // The console's own traffic panel picks the request up on its next polls.
    await waitUntil(
      async () => Number(await page.locator('tr[data-model="tiny"] td.num').first().textContent()) > 0,
      'the models panel to show the request rate',
      30_000,
    );
    await page.screenshot({ path: join(ARTIFACTS, 'console-after-chat.png'), fullPage: true });
  });

  test('a node that enforces attestation shows the self-signed host as refused, and says why', async () => {
    const strict = await cluster.start('strict', {
      client: true,
      join: [relay.mesh.inviteToken()],
      requireAttestedHosts: true,
    });
    await waitUntil(
      () =>
        strict.status().peers.some((p) => p.id === host.endpointId && p.attestation?.tier === 'self-signed'),
      'the strict client to verify the host',
      60_000,
    );
    const strictPage = await browser!.newPage({ viewport: { width: 1440, height: 1100 } });
    try {
      await strictPage.goto(strict.consoleUrl!);
      const refused = strictPage.locator(
        `table.peers tr[data-peer="${host.endpointId}"] [data-badge="policy"]`,
      );
      await refused.waitFor({ timeout: 30_000 });
      assert.equal(await refused.textContent(), 'refused by policy');
      assert.match((await refused.getAttribute('class')) ?? '', /\bbad\b/);
      assert.match(
        (await refused.getAttribute('title')) ?? '',
        /self-signed is below the policy minimum hardware-claimed/,
      );
      const status = strict.status().peers.find((p) => p.id === host.endpointId)!;
      assert.equal(status.policy.refused, true);
      await strictPage.screenshot({ path: join(ARTIFACTS, 'console-strict.png'), fullPage: true });
    } finally {
      await strictPage.close();
    }
  });

  test('the page ran without errors under its CSP', () => {
    assert.deepEqual(pageErrors, []);
  });
});
