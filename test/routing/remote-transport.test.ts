import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openRequest } from '../../src/crypto/envelope.ts';
import { InferenceKeyring } from '../../src/crypto/inference-keys.ts';
import { PreparedExchanges } from '../../src/crypto/prepared-exchanges.ts';
import { ReplayGuard } from '../../src/crypto/replay-guard.ts';
import { ResponseSealer } from '../../src/crypto/response-frames.ts';
import { readAll } from '../../src/http/exchange.ts';
import type { ByteStream, MeshService } from '../../src/mesh/types.ts';
import { RemoteTransport } from '../../src/routing/remote-transport.ts';

const HOST = 'ab'.repeat(32);

/**
 * A mesh double whose every stream reaches an in-memory E2E host: it opens the envelope with
 * the real crypto, records the sender's ephemeral key and answers with a sealed 200.
 */
function encryptedHost() {
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
      })(),
      write: async (chunk) => {
        sent.push(chunk);
      },
      closeWrite: async () => {
        const { session } = openRequest(Buffer.concat(sent), { keyring, replayGuard });
        ephemeralKeys.push(Buffer.from(session.senderEphemeralPublicKey).toString('hex'));
        const sealer = new ResponseSealer(session);
        answer([sealer.data(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}')), sealer.end()]);
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
