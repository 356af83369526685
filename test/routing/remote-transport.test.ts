import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openRequest } from '../../src/crypto/envelope.ts';
import { InferenceKeyring } from '../../src/crypto/inference-keys.ts';
import { PreparedExchanges } from '../../src/crypto/prepared-exchanges.ts';
import { ReplayGuard } from '../../src/crypto/replay-guard.ts';
import { ResponseSealer } from '../../src/crypto/response-frames.ts';
import { PeerLostError, UpstreamError } from '../../src/errors.ts';
import { readAll } from '../../src/http/exchange.ts';
import { StreamClosedError } from '../../src/mesh/byte-stream.ts';
import type { ByteStream, MeshService, PeerRecord } from '../../src/mesh/types.ts';
import { RemoteTransport } from '../../src/routing/remote-transport.ts';

const HOST = 'ab'.repeat(32);

/**
 * A mesh double whose every stream reaches an in-memory E2E host: it opens the envelope with
 * the real crypto, records the sender's ephemeral key and answers with a sealed 200.
 */
function encryptedHost(
  seal: (sealer: ResponseSealer) => Uint8Array[] = (sealer) => [
    sealer.data(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}')),
    sealer.end(),
  ],
  /** Thrown by the stream once the sealed chunks are read (how the stream broke off). */
  breakOff?: () => Error,
) {
  const keyring = new InferenceKeyring();
  const replayGuard = new ReplayGuard();
  const ephemeralKeys: string[] = [];
  const openStream = async (): Promise<ByteStream> => {
    const sent: Uint8Array[] = [];
    let answer!: (chunks: Uint8Array[]) => void;
    const answered = new Promise<Uint8Array[]>((resolve) => {
      answer = resolve;
    });
    return {
      source: (async function* () {
        yield* await answered;
        if (breakOff) throw breakOff();
      })(),
      write: async (chunk) => {
        sent.push(chunk);
      },
      closeWrite: async () => {
        const { session } = openRequest(Buffer.concat(sent), { keyring, replayGuard });
        ephemeralKeys.push(Buffer.from(session.senderEphemeralPublicKey).toString('hex'));
        answer(seal(new ResponseSealer(session)));
      },
      abort: () => undefined,
    };
  };
  const mesh: Pick<MeshService, 'openStream' | 'openForwardedStream' | 'peers'> = {
    openStream,
    openForwardedStream: openStream,
    peers: () => [],
  };
  return { mesh, keyring, ephemeralKeys };
}

/** Records the ephemeral public key of every exchange it hands out. */
class RecordingExchanges extends PreparedExchanges {
  readonly handedOut: (string | undefined)[] = [];
  override take(hostPublicKey: Uint8Array) {
    const exchange = super.take(hostPublicKey);
    this.handedOut.push(exchange && Buffer.from(exchange.ephemeralPublicKey).toString('hex'));
    return exchange;
  }
}

const request = {
  method: 'POST',
  path: '/v1/chat/completions',
  headers: { 'content-type': 'application/json' },
  body: Buffer.from('{"model":"m","messages":[]}'),
};

test('after a request to a host, the next one is sealed with an exchange prepared meanwhile', async () => {
  const host = encryptedHost();
  const exchanges = new RecordingExchanges();
  const transport = new RemoteTransport({ mesh: host.mesh, exchanges });
  const hostKey = host.keyring.current().publicKey;
  try {
    for (let i = 0; i < 3; i++) {
      const response = await transport.send(HOST, request, {
        inferenceKey: hostKey,
        signal: new AbortController().signal,
      });
      assert.equal(response.status, 200);
      assert.equal(Buffer.from(await readAll(response.body, 1024)).toString(), '{}');
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(exchanges.size(hostKey), 2, 'topped up while the answer was on its way');
    }
    assert.equal(exchanges.handedOut[0], undefined, 'the first request made its own');
    assert.deepEqual(exchanges.handedOut.slice(1), host.ephemeralKeys.slice(1), 'later ones were prepared');
    assert.equal(new Set(host.ephemeralKeys).size, 3, 'a fresh ephemeral key per request');
  } finally {
    exchanges.clear();
    host.keyring.destroy();
  }
});

test('a plaintext request prepares nothing', async () => {
  const exchanges = new RecordingExchanges();
  const transport = new RemoteTransport({
    mesh: {
      openStream: async () => ({
        source: (async function* () {
          yield Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
        })(),
        write: async () => undefined,
        closeWrite: async () => undefined,
        abort: () => undefined,
      }),
      openForwardedStream: () => Promise.reject(new Error('unused')),
      peers: () => [],
    },
    exchanges,
  });
  const response = await transport.send(HOST, request, {
    inferenceKey: undefined,
    signal: new AbortController().signal,
  });
  assert.equal(response.status, 200);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(exchanges.handedOut, []);
});

const HEAD = Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n');
const never = () => new AbortController().signal;

/** The UpstreamError code `promise` rejects with. */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof UpstreamError, `an UpstreamError, not ${String(error)}`);
    return error.code;
  }
  assert.fail('expected a failure');
}

/** Sends one sealed request to `host` and reads the whole answer. */
async function sealedExchange(host: ReturnType<typeof encryptedHost>): Promise<void> {
  const transport = new RemoteTransport({ mesh: host.mesh });
  try {
    const response = await transport.send(HOST, request, {
      inferenceKey: host.keyring.current().publicKey,
      signal: never(),
    });
    await readAll(response.body, 1024);
  } finally {
    host.keyring.destroy();
  }
}

test('an answer whose stream broke off or ended early is a transport failure, not a decryption one', async () => {
  // Head and part of the body arrived, then the connection closed under the stream.
  const closed = encryptedHost(
    (sealer) => [sealer.data([HEAD, Buffer.from('{}')])],
    () => new StreamClosedError('the connection closed before the remote finished'),
  );
  assert.equal(await codeOf(sealedExchange(closed)), 'upstream_reset');
  // The remote reset the stream (libp2p's StreamResetError).
  const reset = encryptedHost(
    (sealer) => [sealer.data([HEAD, Buffer.from('{}')])],
    () => Object.assign(new Error('The stream has been reset'), { name: 'StreamResetError' }),
  );
  assert.equal(await codeOf(sealedExchange(reset)), 'upstream_reset');
  // The stream ended cleanly before the end frame (a relay closing its half): no e2e_ code.
  const ended = encryptedHost((sealer) => [sealer.data([HEAD, Buffer.from('{}')])]);
  assert.equal(await codeOf(sealedExchange(ended)), 'upstream_reset');
  // ...and inside a frame.
  const cut = encryptedHost((sealer) => [sealer.data([HEAD, Buffer.from('{}')]).subarray(0, 60)]);
  assert.equal(await codeOf(sealedExchange(cut)), 'upstream_reset');
});

test('received bytes that fail to authenticate are an end-to-end failure', async () => {
  const tampered = encryptedHost((sealer) => {
    const frame = Buffer.from(sealer.data([HEAD, Buffer.from('{}')]));
    frame[frame.length - 1]! ^= 0xff;
    return [frame, sealer.end()];
  });
  assert.equal(await codeOf(sealedExchange(tampered)), 'e2e_decrypt_failed');
});

test('a connection that closes before the host answered means the host is unreachable', async () => {
  const closed = encryptedHost(
    () => [],
    () => new StreamClosedError('the connection closed before the remote finished'),
  );
  assert.equal(await codeOf(sealedExchange(closed)), 'peer_unreachable');
  // libp2p's ping timed out and aborted the connection: the stream ends with that error.
  const pingFailed = encryptedHost(
    () => [],
    () => Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' }),
  );
  assert.equal(await codeOf(sealedExchange(pingFailed)), 'peer_unreachable');
});

/** A plaintext stream whose source ends with `error` before any byte. */
function failingStream(error: Error): ByteStream {
  return {
    source: (async function* () {
      yield* [];
      throw error;
    })(),
    write: async () => undefined,
    closeWrite: async () => undefined,
    abort: () => undefined,
  };
}

const CARRIER = { endpointId: 'cd'.repeat(32), connected: true } as PeerRecord;

test('a forwarding node that resets the stream before an answer means the host is unreachable', async () => {
  const transport = new RemoteTransport({
    mesh: {
      openStream: () => Promise.reject(new UpstreamError('cannot reach peer', 'peer_unreachable')),
      openForwardedStream: async () =>
        failingStream(Object.assign(new Error('The stream has been reset'), { name: 'StreamResetError' })),
      peers: () => [CARRIER],
    },
  });
  const sent = transport.send(HOST, request, { inferenceKey: undefined, signal: never() });
  assert.equal(await codeOf(sent), 'peer_unreachable');
});

test('a host whose connection just died is not sought through other members', async () => {
  let forwarded = 0;
  const transport = new RemoteTransport({
    mesh: {
      openStream: () => Promise.reject(new PeerLostError('cannot reach peer (its connection closed)')),
      openForwardedStream: async () => {
        forwarded++;
        return failingStream(new Error('unused'));
      },
      peers: () => [CARRIER],
    },
  });
  const sent = transport.send(HOST, request, { inferenceKey: undefined, signal: never() });
  assert.equal(await codeOf(sent), 'peer_unreachable');
  assert.equal(forwarded, 0);
});
