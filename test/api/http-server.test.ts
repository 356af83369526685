import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHttpServer } from '../../src/api/http-server.ts';
import type { UpstreamResponse } from '../../src/http/exchange.ts';
import { silentLogger } from '../../src/log.ts';

async function serve(answer: () => UpstreamResponse) {
  return startHttpServer({
    host: '127.0.0.1',
    port: 0,
    maxBodyBytes: 1024,
    handler: async () => answer(),
    logger: silentLogger(),
  });
}

/** Milliseconds until the response head, and until each body chunk, for one GET. */
function timeline(port: number): Promise<{ head: number; chunks: { at: number; text: string }[] }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/' }, (res) => {
      const head = performance.now() - started;
      const chunks: { at: number; text: string }[] = [];
      res.on('data', (chunk: Buffer) =>
        chunks.push({ at: performance.now() - started, text: chunk.toString() }),
      );
      res.on('end', () => resolve({ head, chunks }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('a streamed answer whose first token is slow sends its headers at once', async () => {
  const server = await serve(() => ({
    status: 200,
    headers: { 'content-type': 'text/event-stream' },
    body: (async function* () {
      await sleep(400);
      yield Buffer.from('data: first\n\n');
    })(),
  }));
  try {
    const { head, chunks } = await timeline(server.port);
    assert.equal(chunks.map((c) => c.text).join(''), 'data: first\n\n');
    assert.ok(chunks[0]!.at >= 350, `the token came after its delay (${chunks[0]!.at} ms)`);
    assert.ok(head < chunks[0]!.at - 250, `headers at ${head} ms, first token at ${chunks[0]!.at} ms`);
  } finally {
    await server.close();
  }
});

test('a streamed answer whose first token is ready arrives whole, in order', async () => {
  const server = await serve(() => ({
    status: 200,
    headers: { 'content-type': 'text/event-stream' },
    body: (async function* () {
      yield Buffer.from('data: a\n\n');
      yield Buffer.from('data: b\n\n');
    })(),
  }));
  try {
    const { chunks } = await timeline(server.port);
    assert.equal(chunks.map((c) => c.text).join(''), 'data: a\n\ndata: b\n\n');
  } finally {
    await server.close();
  }
});
