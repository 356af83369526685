import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { readAll } from '../../src/http/exchange.ts';
import { HttpWireError } from '../../src/http/http1.ts';
import { Http1Client, type HttpClientError } from '../../src/http/http1-client.ts';

/**
 * A raw TCP server answering each request with whatever `answer` writes, so framing (and its
 * mistakes) is exactly what a test says. Requests are read up to the end of their
 * content-length body.
 */
async function rawServer(answer: (socket: Socket, request: string, index: number) => void) {
  const sockets: Socket[] = [];
  const requests: string[] = [];
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    let buffered = '';
    socket.on('data', (data) => {
      buffered += data.toString('latin1');
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        const request = buffered.slice(0, end + 4 + length);
        buffered = buffered.slice(end + 4 + length);
        requests.push(request);
        answer(socket, request, requests.length - 1);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    origin: `http://127.0.0.1:${port}`,
    sockets,
    requests,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const ok = (body: string) =>
  `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

async function text(
  client: Http1Client,
  path = '/v1/x',
  body = 'hi',
  signal?: AbortSignal,
  extraHeaders: Record<string, string> = {},
) {
  const res = await client.request({
    method: 'POST',
    path,
    headers: { 'content-type': 'text/plain', ...extraHeaders },
    body: Buffer.from(body),
    ...(signal ? { signal } : {}),
  });
  return { status: res.status, headers: res.headers, text: (await readAll(res.body)).toString() };
}

describe('Http1Client', () => {
  const servers: { close(): Promise<void> }[] = [];
  const clients: Http1Client[] = [];
  const serve = async (answer: Parameters<typeof rawServer>[0]) => {
    const server = await rawServer(answer);
    servers.push(server);
    const client = new Http1Client({ origin: server.origin });
    clients.push(client);
    return { server, client };
  };
  after(async () => {
    for (const client of clients) client.close();
    await Promise.all(servers.map((s) => s.close()));
  });

  test('sends the request in HTTP/1.1 form and reuses one connection for sequential requests', async () => {
    const { server, client } = await serve((socket, _request, i) => socket.write(ok(`answer ${i}`)));
    for (let i = 0; i < 3; i++) {
      const res = await text(client, '/v1/chat/completions?x=1', `{"n":${i}}`, undefined, {
        host: 'evil.example',
        'content-length': '1',
        'transfer-encoding': 'chunked',
      });
      assert.deepEqual(
        [res.status, res.text, res.headers['content-type']],
        [200, `answer ${i}`, 'text/plain'],
      );
    }
    assert.equal(server.sockets.length, 1, 'one kept-alive connection');
    const [head, body] = server.requests[0]!.split('\r\n\r\n');
    const lines = head!.split('\r\n');
    assert.equal(lines[0], 'POST /v1/chat/completions?x=1 HTTP/1.1');
    assert.ok(lines.includes(`host: ${new URL(server.origin).host}`));
    assert.ok(lines.includes('content-type: text/plain'));
    assert.ok(lines.includes('content-length: 7'));
    assert.equal(lines.filter((l) => /^(host|content-length):/.test(l)).length, 2, 'one host, one length');
    assert.equal(body, '{"n":0}');
  });

  test('reads chunked bodies as they arrive, and close-delimited ones to the end', async () => {
    let release: () => void = () => {};
    const { server, client } = await serve((socket, request) => {
      if (request.includes('/chunked')) {
        socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n');
        release = () => socket.write('7\r\n second\r\n0\r\n\r\n');
      } else {
        socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n');
      }
    });
    const res = await client.request({ method: 'POST', path: '/chunked', headers: {} });
    const iterator = res.body[Symbol.asyncIterator]();
    assert.equal(Buffer.from((await iterator.next()).value!).toString(), 'first', 'before the rest was sent');
    release();
    assert.equal(Buffer.from((await iterator.next()).value!).toString(), ' second');
    assert.equal((await iterator.next()).done, true);
    assert.equal((await text(client, '/close')).text, 'data: 1\n\ndata: 2\n\n');
    assert.equal((await text(client, '/close')).text, 'data: 1\n\ndata: 2\n\n');
    assert.equal(server.sockets.length, 2, 'the chunked connection was reused, the closed ones not');
  });

  test('skips interim 1xx answers and gives 204 no body', async () => {
    const { client } = await serve((socket, request) => {
      if (request.includes('/continue')) socket.write(`HTTP/1.1 100 Continue\r\n\r\n${ok('after 100')}`);
      else socket.write('HTTP/1.1 204 No Content\r\n\r\n');
    });
    assert.equal((await text(client, '/continue')).text, 'after 100');
    assert.deepEqual(await text(client, '/empty'), { status: 204, headers: {}, text: '' });
  });

  test('does not reuse a connection after connection: close, HTTP/1.0, or bytes past the body', async () => {
    const answers = [
      'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\na',
      'HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nb',
      'HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\ncEXTRA',
      ok('d'),
      ok('e'),
    ];
    const { server, client } = await serve((socket) => socket.write(answers[server.requests.length - 1]!));
    const texts: string[] = [];
    for (let i = 0; i < answers.length; i++) texts.push((await text(client)).text);
    assert.deepEqual(texts, ['a', 'b', 'c', 'd', 'e']);
    assert.equal(server.sockets.length, 4, 'three connections not reused; the last two share one');
  });

  test('retries once on a new connection when a kept-alive one was closed under the request', async () => {
    const { server, client } = await serve((socket, _request, i) => {
      // The first connection's second request finds it closed by the server: no answer at all.
      if (i === 1) socket.destroy();
      else socket.write(ok(`answer ${i}`));
    });
    assert.equal((await text(client)).text, 'answer 0');
    assert.equal((await text(client)).text, 'answer 2');
    assert.equal(server.sockets.length, 2);
  });

  test('a new connection that closes without an answer is an error, not a retry loop', async () => {
    const { server, client } = await serve((socket) => socket.destroy());
    await assert.rejects(text(client), (err: HttpClientError) => err.code === 'connection_lost');
    assert.equal(server.requests.length, 1);
  });

  test('refuses malformed and ambiguous responses with a typed error', async () => {
    const bad: Record<string, string> = {
      '/status': 'HTTP/1.1 OK\r\n\r\n',
      '/lengths': 'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab',
      '/length': 'HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n',
      '/coding': 'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n',
      '/header': 'HTTP/1.1 200 OK\r\nno colon here\r\n\r\n',
      '/switch': 'HTTP/1.1 101 Switching Protocols\r\n\r\n',
    };
    const { client } = await serve((socket, request) => {
      const path = request.split(' ')[1]!;
      socket.write(bad[path] ?? 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n');
    });
    for (const path of [...Object.keys(bad), '/chunk']) {
      await assert.rejects(
        text(client, path),
        (err: HttpClientError) => err.code === 'malformed_response',
        `${path} is refused`,
      );
    }
  });

  test('a connection lost mid-body ends the body with connection_lost', async () => {
    const { client } = await serve((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial');
      setTimeout(() => socket.destroy(), 20);
    });
    await assert.rejects(text(client), (err: HttpClientError) => err.code === 'connection_lost');
  });

  test('aborting mid-body or leaving early closes the connection; the next request uses a new one', async () => {
    const closed: Promise<void>[] = [];
    const { server, client } = await serve((socket, request) => {
      closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
      if (request.includes('/slow'))
        socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n');
      else socket.write(ok('fine'));
    });
    const controller = new AbortController();
    const res = await client.request({
      method: 'POST',
      path: '/slow',
      headers: {},
      signal: controller.signal,
    });
    const iterator = res.body[Symbol.asyncIterator]();
    await iterator.next();
    controller.abort(new Error('client went away'));
    await assert.rejects(iterator.next(), /client went away|connection failed/);
    await closed[0];

    const early = await client.request({ method: 'POST', path: '/slow', headers: {} });
    await early.body[Symbol.asyncIterator]().return?.();
    await closed[1];
    assert.equal((await text(client)).text, 'fine');
    assert.equal(server.sockets.length, 3);
  });

  test('an aborted signal stops a request before it is sent', async () => {
    const { server, client } = await serve((socket) => socket.write(ok('x')));
    await assert.rejects(text(client, '/v1/x', 'hi', AbortSignal.abort(new Error('too late'))), /too late/);
    assert.equal(server.requests.length, 0);
  });

  test('refuses header values that would split the request, and reports refused connections', async () => {
    const { server, client } = await serve((socket) => socket.write(ok('x')));
    await assert.rejects(
      client.request({ method: 'POST', path: '/v1/x', headers: { 'x-id': 'a\r\nx-evil: 1' } }),
      HttpWireError,
    );
    await assert.rejects(client.request({ method: 'POST', path: 'no-slash', headers: {} }), HttpWireError);
    assert.equal(server.requests.length, 0);
    const port = new URL(server.origin).port;
    await server.close();
    const closedClient = new Http1Client({ origin: `http://127.0.0.1:${port}` });
    await assert.rejects(text(closedClient), (err: HttpClientError) => err.code === 'connect_failed');
  });
});

describe('Http1Client over TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-llm-tls-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let haveOpenssl = true;
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost',
        '-days',
        '1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
  } catch {
    haveOpenssl = false;
  }

  test('talks to an https backend and checks its certificate', {
    skip: !haveOpenssl && 'no openssl',
  }, async () => {
    const cert = readFileSync(join(dir, 'cert.pem'));
    const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (req, res) => {
      req.resume();
      req.on('end', () => res.end(`secure ${req.method}`));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const trusting = new Http1Client({ origin: `https://localhost:${port}`, tls: { ca: cert } });
    const untrusting = new Http1Client({ origin: `https://localhost:${port}` });
    try {
      assert.equal((await text(trusting)).text, 'secure POST');
      assert.equal((await text(trusting)).text, 'secure POST', 'kept alive over TLS');
      await assert.rejects(text(untrusting), (err: HttpClientError) => err.code === 'connect_failed');
    } finally {
      trusting.close();
      untrusting.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
