import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { ReplayGuard, sealRequest } from '../../src/crypto/envelope.ts';
import { InferenceKeyring } from '../../src/crypto/inference-keys.ts';
import { jsonResponse } from '../../src/http/exchange.ts';
import { serializeRequest } from '../../src/http/http1.ts';
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

test("one peer's flood of valid envelopes is refused at its share while another peer is still served", async () => {
  const keyring = new InferenceKeyring();
  const replayGuard = new ReplayGuard({ maxEntries: 8, maxEntriesPerSender: 2 });
  const handler = createInboundHttpHandler({
    router: { dispatchLocal: async () => jsonResponse(200, { ok: true }) },
    e2e: { keyring, replayGuard },
    acceptPlaintext: false,
    maxRequestBytes: 64 * 1024,
    logger: createLogger({ format: 'json', level: 'silent' }),
  });
  const send = async (peer: string) => {
    const plaintext = serializeRequest(
      {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' },
        body: Buffer.from('{"model":"m","messages":[]}'),
      },
      { 'x-mesh-sent-at': String(Date.now()) },
    );
    const { envelope, session } = sealRequest(plaintext, keyring.current().publicKey);
    session.dispose();
    const s = memoryStream([envelope]);
    await handler(s.stream, peer);
    return s.aborted() === undefined ? 'answered' : 'refused';
  };
  const flooder = 'aa'.repeat(32);
  const friend = 'bb'.repeat(32);
  assert.deepEqual(
    [await send(flooder), await send(flooder), await send(flooder), await send(friend)],
    ['answered', 'answered', 'refused', 'answered'],
  );
  assert.equal(replayGuard.heldBy(flooder), 2);
  keyring.destroy();
});
