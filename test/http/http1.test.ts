import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { bodyOf, readAll } from '../../src/http/exchange.ts';
import {
  HttpWireError,
  MAX_HEAD_BYTES,
  parseRequest,
  parseResponse,
  serializeRequest,
  serializeResponseHead,
} from '../../src/http/http1.ts';

const request = {
  method: 'POST',
  path: '/v1/chat/completions',
  headers: { 'content-type': 'application/json', connection: 'keep-alive' },
  body: Buffer.from('{"model":"m"}'),
};

test('a request round-trips; hop-by-hop headers are dropped and extras added', () => {
  const parsed = parseRequest(serializeRequest(request, { 'x-mesh-sent-at': '123' }));
  assert.equal(parsed.method, 'POST');
  assert.equal(parsed.path, '/v1/chat/completions');
  assert.equal(parsed.headers['content-type'], 'application/json');
  assert.equal(parsed.headers['x-mesh-sent-at'], '123');
  assert.equal(parsed.headers.connection, undefined);
  assert.deepEqual(Buffer.from(parsed.body), request.body);
});

test('a response head and body stream through, split at every byte', async () => {
  const whole = Buffer.concat([
    serializeResponseHead(200, { 'content-type': 'text/event-stream', 'transfer-encoding': 'chunked' }),
    Buffer.from('data: a\n\ndata: [DONE]\n\n'),
  ]);
  for (let cut = 1; cut < whole.length; cut++) {
    const response = await parseResponse(bodyOf(whole.subarray(0, cut), whole.subarray(cut)));
    assert.equal(response.status, 200);
    assert.equal(response.headers['content-type'], 'text/event-stream');
    assert.equal(response.headers['transfer-encoding'], undefined);
    assert.equal((await readAll(response.body)).toString(), 'data: a\n\ndata: [DONE]\n\n');
  }
});

test('malformed requests are HttpWireErrors', () => {
  const bad = [
    '',
    'POST /v1 HTTP/1.1\r\n',
    'post /v1 HTTP/1.1\r\n\r\n',
    'POST v1 HTTP/1.1\r\n\r\n',
    'POST /v1 HTTP/2\r\n\r\n',
    'POST /v1 HTTP/1.1\r\nno-colon\r\n\r\n',
    'POST /v1 HTTP/1.1\r\nbad name: x\r\n\r\n',
    'POST /v1 HTTP/1.1\r\ncontent-length: x\r\n\r\n',
    'POST /v1 HTTP/1.1\r\ncontent-length: 5\r\n\r\nab',
    `POST /v1 HTTP/1.1\r\nx: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`,
  ];
  for (const text of bad)
    assert.throws(() => parseRequest(Buffer.from(text)), HttpWireError, JSON.stringify(text.slice(0, 40)));
});

test('header injection and bad tokens are refused when serializing', () => {
  assert.throws(() => serializeRequest({ ...request, headers: { x: 'a\r\nevil: 1' } }), HttpWireError);
  assert.throws(() => serializeRequest({ ...request, method: 'PO ST' }), HttpWireError);
  assert.throws(() => serializeRequest({ ...request, path: '/a b' }), HttpWireError);
  assert.throws(() => serializeResponseHead(42, {}), HttpWireError);
});

test('malformed or truncated responses are HttpWireErrors', async () => {
  for (const text of [
    '',
    'HTTP/1.1 200 OK\r\n',
    'HTTP/1.1 abc\r\n\r\n',
    'SMTP 200\r\n\r\n',
    'HTTP/1.1 200 OK\r\n: x\r\n\r\n',
  ]) {
    await assert.rejects(parseResponse(bodyOf(Buffer.from(text))), HttpWireError);
  }
  await assert.rejects(parseResponse(bodyOf(Buffer.alloc(MAX_HEAD_BYTES + 10, 0x61))), HttpWireError);
});

test('fuzz: random and mutated input only ever raises HttpWireError', async () => {
  const valid = serializeRequest(request);
  const head = serializeResponseHead(200, { 'content-type': 'application/json' });
  for (let i = 0; i < 3000; i++) {
    const base = i % 2 === 0 ? Buffer.from(valid) : Buffer.from(head);
    const input = i % 3 === 0 ? randomBytes(i % 200) : base;
    if (i % 3 !== 0) {
      for (let k = 0; k < 1 + (i % 4); k++) {
        const at = (i * 7919 + k * 104729) % input.length;
        input[at] = input[at]! ^ (1 << (k % 8));
      }
    }
    try {
      parseRequest(input);
    } catch (error) {
      assert.ok(error instanceof HttpWireError, `unexpected ${(error as Error).name}`);
    }
    try {
      const response = await parseResponse(bodyOf(input));
      await readAll(response.body);
    } catch (error) {
      assert.ok(error instanceof HttpWireError, `unexpected ${(error as Error).name}`);
    }
  }
});
