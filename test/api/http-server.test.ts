import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Socket } from 'node:net';
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

/** A server whose handler reads the body and answers with its length (or the body's error). */
async function echoLength() {
  return startHttpServer({
    host: '127.0.0.1',
    port: 0,
    maxBodyBytes: 1024,
    handler: async (req) => {
      const body = await req.readBody();
      return {
        status: 200,
        headers: { 'content-type': 'text/plain' },
        body: (async function* () {
          yield Buffer.from(String(body.byteLength));
        })(),
      };
    },
    logger: silentLogger(),
  });
}

function post(port: number, chunks: Buffer[], headers: Record<string, string> = {}) {
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

test('a body is read whole in one or many chunks; a chunked upload past the limit gets a 413', async () => {
  const server = await echoLength();
  try {
    assert.deepEqual(await post(server.port, [Buffer.alloc(700)]), { status: 200, text: '700' });
    const pieces = [Buffer.alloc(300), Buffer.alloc(300), Buffer.alloc(300)];
    assert.deepEqual(await post(server.port, pieces), { status: 200, text: '900' });
    const tooMuch = await post(server.port, [Buffer.alloc(800), Buffer.alloc(800)]);
    assert.equal(tooMuch.status, 413);
    assert.match(tooMuch.text, /request_too_large/);
  } finally {
    await server.close();
  }
});

test('a client that leaves in the middle of its body costs the server nothing', async () => {
  const server = await echoLength();
  try {
    const socket = new Socket();
    await new Promise<void>((r) => socket.connect(server.port, '127.0.0.1', r));
    socket.write('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n0123456789');
    await sleep(50);
    socket.destroy();
    await sleep(50);
    assert.deepEqual(await post(server.port, [Buffer.alloc(10)]), { status: 200, text: '10' });
  } finally {
    await server.close();
  }
});
