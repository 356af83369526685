/**
 * Starts a small real mesh on loopback (a relay, a host reachable only through it, a host
 * reachable directly, and a client), sends a few requests through the client, and saves a
 * screenshot of the client's console (the README's docs/console.png). Needs Chromium.
 *
 *   node scripts/console-screenshot.ts [--out FILE] [--width 1440] [--height 1240]
 *
 * The README's copy is then reduced to 256 colours: pngquant --force --output FILE FILE
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { seesModel, TestCluster, waitUntil } from '../test/helpers/cluster.ts';
import { buildConsole } from './build-console.ts';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'docs/console.png' },
    width: { type: 'string', default: '1440' },
    height: { type: 'string', default: '1240' },
  },
});
await buildConsole();
const cluster = new TestCluster();
try {
  const relay = await cluster.start('relay-eu', { relay: true });
  const token = relay.mesh.inviteToken();
  const model = { path: await cluster.tinyModel(), name: 'tiny-llama', threads: 1, contextSize: 256 };
  await cluster.start('gpu-box', { join: [token], reachableOnlyViaRelay: true, model });
  await cluster.start('workstation', { join: [token], model });
  const client = await cluster.start('laptop', { client: true, join: [token] });
  await waitUntil(
    () => client.router.listModels().some((m) => m.id === 'tiny-llama' && m.hosts.length === 2),
    'both hosts',
    60_000,
  );
  await waitUntil(() => seesModel(client, 'tiny-llama'), 'the model');
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox'],
  });
  try {
    const page = await browser.newPage({
      viewport: { width: Number(values.width), height: Number(values.height) },
      colorScheme: 'dark',
    });
    await page.goto(client.consoleUrl!);
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${client.apiUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'tiny-llama',
          messages: [{ role: 'user', content: `hello ${i}` }],
          max_tokens: 32,
          stream: true,
        }),
      });
      await res.arrayBuffer();
      await new Promise((r) => setTimeout(r, 700));
    }
    await page.selectOption('#pg-model', 'tiny-llama');
    await page.click('#pg-send');
    await page.locator('#pg-meta [data-key="done"]').waitFor({ timeout: 60_000 });
    await new Promise((r) => setTimeout(r, 2500));
    await page.screenshot({ path: resolve(values.out) });
    process.stdout.write(`saved ${resolve(values.out)}\n`);
  } finally {
    await browser.close();
  }
} finally {
  await cluster.stopAll();
}
