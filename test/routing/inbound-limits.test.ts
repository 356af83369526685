import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InferenceKeyring } from '../../src/crypto/inference-keys.ts';
import { NoCapacityError, RateLimitedError, UpstreamError } from '../../src/errors.ts';
import { readAll } from '../../src/http/exchange.ts';
import { InboundLimiter } from '../../src/routing/inbound-limits.ts';
import { RemoteTransport } from '../../src/routing/remote-transport.ts';

const MIB = 1024 * 1024;
const limits = {
  maxStreamsPerPeer: 2,
  maxBytesInFlight: 8 * MIB,
  bodyReadTimeoutMs: 1000,
  requestWaitMs: 1000,
};

test('a peer holds at most a quarter of the byte budget; all peers together at most the budget', () => {
  const limiter = new InboundLimiter(limits, MIB);
  const a = limiter.admit('a');
  a.reserve(2 * MIB);
  assert.throws(
    () => a.reserve(1),
    (e: Error) => e instanceof RateLimitedError && /peer_byte_limit/.test((e as RateLimitedError).code),
  );
  const others = ['b', 'c', 'd'].map((peer) => {
    const ticket = limiter.admit(peer);
    ticket.reserve(2 * MIB);
    return ticket;
  });
  assert.equal(limiter.bytesInFlight, 8 * MIB);
  const e = limiter.admit('e');
  assert.throws(
    () => e.reserve(1),
    (error: Error) => error instanceof NoCapacityError,
  );
  others[0]!.release();
  e.reserve(MIB);
  assert.equal(limiter.bytesInFlight, 7 * MIB);
  a.release();
  a.release(); // idempotent
  assert.equal(limiter.bytesInFlight, 5 * MIB);
});

test('a peer holds at most maxStreamsPerPeer streams; a released one makes room', () => {
  const limiter = new InboundLimiter(limits, MIB);
  const first = limiter.admit('a');
  limiter.admit('a');
  assert.throws(() => limiter.admit('a'), RateLimitedError);
  limiter.admit('b');
  first.release();
  limiter.admit('a');
});

test("a host's plaintext refusal of a sealed request is an error status; a plaintext 2xx is not content", async () => {
  const keyring = new InferenceKeyring();
  const answerWith = (text: string) =>
    new RemoteTransport({
      mesh: {
        openStream: async () => ({
          source: (async function* () {
            yield Buffer.from(text);
          })(),
          write: async () => undefined,
          closeWrite: async () => undefined,
          abort: () => undefined,
        }),
        openForwardedStream: () => Promise.reject(new Error('unused')),
        peers: () => [],
      },
    });
  const request = { method: 'POST', path: '/v1/chat/completions', headers: {}, body: Buffer.from('{}') };
  const options = { inferenceKey: keyring.current().publicKey, signal: new AbortController().signal };
  try {
    const body = '{"error":{"code":"peer_stream_limit"}}';
    const refused = await answerWith(
      `HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\r\n${body}`,
    ).send('ab'.repeat(32), request, options);
    assert.equal(refused.status, 429);
    assert.equal(Buffer.from(await readAll(refused.body)).toString(), body);
    await assert.rejects(
      answerWith('HTTP/1.1 200 OK\r\n\r\n{"injected":true}').send('ab'.repeat(32), request, options),
      UpstreamError,
    );
  } finally {
    keyring.destroy();
  }
});
