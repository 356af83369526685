import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { pointFromKeyObject } from '../../src/attestation/ecdsa.ts';
import {
  answerChallenge,
  CHALLENGE_DOMAIN,
  challengeBytes,
  LivenessTracker,
  verifyChallengeAnswer,
} from '../../src/attestation/liveness.ts';
import type { AttestationKeyProvider } from '../../src/attestation/providers/types.ts';
import { challengePeer, handleAttestStream } from '../../src/mesh/attest-protocol.ts';
import { decodeFrames, encodeFrame } from '../../src/mesh/frames.ts';
import { AttestChallengeSchema, AttestResponseSchema } from '../../src/proto/gen/mesh_pb.js';
import { streamPair } from './helpers.ts';

function memoryProvider(): AttestationKeyProvider {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const point = pointFromKeyObject(privateKey);
  return {
    kind: 'software',
    hardware: false,
    publicKey: () => point.slice(),
    sign: async (data) => new Uint8Array(sign('sha256', data, { key: privateKey, dsaEncoding: 'der' })),
  };
}
const b64 = (p: AttestationKeyProvider) => Buffer.from(p.publicKey()).toString('base64');

describe('liveness challenge', () => {
  it('encodes the challenge bytes as specified', () => {
    const nonce = new Uint8Array(32).fill(7);
    const bytes = Buffer.from(challengeBytes('QUJD', nonce));
    const expected = Buffer.concat([
      Buffer.from(CHALLENGE_DOMAIN),
      Buffer.from([4, 0, 0, 0]),
      Buffer.from('QUJD'),
      nonce,
    ]);
    assert.deepEqual(bytes, expected);
    assert.throws(() => challengeBytes('QUJD', new Uint8Array(31)));
  });

  it('accepts a good answer and rejects a wrong key, wrong nonce or garbage', async () => {
    const provider = memoryProvider();
    const other = memoryProvider();
    const nonce = randomBytes(32);
    const answer = await answerChallenge(provider, nonce);
    assert.equal(verifyChallengeAnswer(b64(provider), nonce, answer), true);
    assert.equal(verifyChallengeAnswer(b64(other), nonce, answer), false, 'wrong key');
    assert.equal(verifyChallengeAnswer(b64(provider), randomBytes(32), answer), false, 'wrong nonce');
    assert.equal(verifyChallengeAnswer(b64(provider), nonce, await answerChallenge(other, nonce)), false);
    assert.equal(verifyChallengeAnswer(b64(provider), nonce, new Uint8Array(70)), false);
    assert.equal(verifyChallengeAnswer('not base64!', nonce, answer), false);
    assert.equal(verifyChallengeAnswer(b64(provider), new Uint8Array(3), answer), false);
  });

  it('tracks liveness: 3 misses in a row make a peer not live until it answers again', () => {
    const tracker = new LivenessTracker();
    const peer = 'ab'.repeat(32);
    assert.equal(tracker.isLive(peer), false, 'never challenged: not live');
    tracker.record(peer, true);
    assert.equal(tracker.isLive(peer), true);
    tracker.record(peer, false);
    tracker.record(peer, false);
    assert.equal(tracker.isLive(peer), true, 'two misses are tolerated');
    tracker.record(peer, true);
    tracker.record(peer, false);
    tracker.record(peer, false);
    assert.equal(tracker.isLive(peer), true, 'misses must be consecutive');
    tracker.record(peer, false);
    assert.equal(tracker.isLive(peer), false);
    assert.equal(tracker.state(peer)?.consecutiveMisses, 3);
    tracker.record(peer, false);
    assert.equal(tracker.isLive(peer), false);
    tracker.record(peer, true);
    assert.equal(tracker.isLive(peer), true, 'recovers on a good answer');
    tracker.forget(peer);
    assert.equal(tracker.isLive(peer), false);
  });
});

describe('/mesh-llm/attest/1.0.0 protocol', () => {
  it('challenger verifies the responder key', async () => {
    const provider = memoryProvider();
    const [client, server] = streamPair();
    const handled = handleAttestStream(server, provider);
    assert.equal(await challengePeer(client, b64(provider), { timeoutMs: 5000 }), true);
    await handled;
  });

  it('fails when the responder holds a different key', async () => {
    const [client, server] = streamPair();
    const handled = handleAttestStream(server, memoryProvider());
    assert.equal(await challengePeer(client, b64(memoryProvider()), { timeoutMs: 5000 }), false);
    await handled;
  });

  it('fails when the responder has no key', async () => {
    const [client, server] = streamPair();
    const handled = handleAttestStream(server, undefined);
    assert.equal(await challengePeer(client, b64(memoryProvider()), { timeoutMs: 5000 }), false);
    await handled;
  });

  it('fails when the responder replays an old answer or claims the key without signing', async () => {
    const provider = memoryProvider();
    const stale = await answerChallenge(provider, randomBytes(32));
    const [client, server] = streamPair();
    const fake = (async () => {
      for await (const _frame of decodeFrames(server.source)) {
        const reply = create(AttestResponseSchema, { signature: stale, sePublicKey: b64(provider) });
        await server.write(encodeFrame(toBinary(AttestResponseSchema, reply)));
        await server.closeWrite();
        return;
      }
    })();
    assert.equal(await challengePeer(client, b64(provider), { timeoutMs: 5000 }), false);
    await fake;
  });

  it('times out on a silent peer without hanging', async () => {
    const [client] = streamPair();
    assert.equal(await challengePeer(client, b64(memoryProvider()), { timeoutMs: 50 }), false);
    assert.ok(client.aborted);
  });

  it('responder rejects a bad nonce and survives garbage', async () => {
    const provider = memoryProvider();
    {
      const [client, server] = streamPair();
      const handled = handleAttestStream(server, provider);
      await client.write(
        encodeFrame(
          toBinary(AttestChallengeSchema, create(AttestChallengeSchema, { nonce: new Uint8Array(5) })),
        ),
      );
      await client.closeWrite();
      let reply: Uint8Array | undefined;
      for await (const frame of decodeFrames(client.source)) reply = frame;
      await handled;
      assert.ok(reply);
      const response = fromBinary(AttestResponseSchema, reply);
      assert.match(response.error, /32 bytes/);
      assert.equal(response.signature.byteLength, 0);
    }
    {
      const [client, server] = streamPair();
      const handled = handleAttestStream(server, provider);
      await client.write(Uint8Array.of(0x05, 0xff, 0xff, 0xff, 0xff, 0xff));
      await client.closeWrite();
      await handled; // must resolve, not throw
      assert.ok(server.aborted);
    }
    {
      const [, server] = streamPair();
      await handleAttestStream(server, provider, { timeoutMs: 50 });
      assert.ok(server.aborted, 'a silent challenger is cut off');
    }
  });
});
