import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '../../src/log.ts';
import type { ByteStream } from '../../src/mesh/types.ts';
import { createInboundHttpHandler } from '../../src/routing/inbound-http.ts';

/** An in-memory stream double: `input` is what the sender wrote before half-closing. */
function memoryStream(input: Uint8Array[]) {
  const written: Uint8Array[] = [];
  let closed = false;
  let aborted: Error | undefined;
  const stream: ByteStream = {
    source: (async function* () {
      yield* input;
    })(),
    write: async (chunk) => {
      written.push(chunk);
    },
    closeWrite: async () => {
      closed = true;
    },
    abort: (error) => {
      aborted = error;
    },
  };
  return { stream, written, closed: () => closed, aborted: () => aborted };
}

function handlerWithLogs() {
  const lines: string[] = [];
  const logger = createLogger({
    format: 'json',
    level: 'debug',
    destination: new Writable({
      write(chunk, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    }),
  });
  const handler = createInboundHttpHandler({
    router: {
      dispatchLocal: async () => {
        throw new Error('no request should reach the backend');
      },
    },
    acceptPlaintext: true,
    maxRequestBytes: 1024,
    logger,
  });
  return { handler, lines };
}

test('a warm stream closed without a request is ended quietly: no answer, no warning', async () => {
  const { handler, lines } = handlerWithLogs();
  const s = memoryStream([]);
  await handler(s.stream, 'ab'.repeat(32));
  assert.ok(s.closed());
  assert.equal(s.aborted(), undefined);
  assert.deepEqual(s.written, []);
  assert.deepEqual(lines, []);
});

test('a malformed plaintext request still gets a 400 and a warning', async () => {
  const { handler, lines } = handlerWithLogs();
  const s = memoryStream([Buffer.from('not http\r\n\r\n')]);
  await handler(s.stream, 'ab'.repeat(32));
  assert.match(Buffer.concat(s.written).toString(), /^HTTP\/1\.1 400/);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /plaintext request rejected/);
});
