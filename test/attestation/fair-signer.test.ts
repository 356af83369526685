import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AttestationError } from '../../src/attestation/errors.ts';
import { FairChallengeSigner } from '../../src/attestation/liveness.ts';

/** A signer that takes `ms` per signature and records whose nonce it signed. */
function slowSigner(ms: number) {
  const order: string[] = [];
  const sign = async (nonce: Uint8Array) => {
    await new Promise((resolve) => setTimeout(resolve, ms));
    order.push(Buffer.from(nonce).toString());
    return nonce;
  };
  return { order, sign };
}

const nonce = (text: string) => new Uint8Array(Buffer.from(text));

test('a flooding peer is refused beyond its few and an honest peer is answered next in turn', async () => {
  const { order, sign } = slowSigner(20);
  const signer = new FairChallengeSigner(sign, {
    perPeerPending: 2,
    perPeerBurst: 100,
    perPeerIntervalMs: 1,
  });
  const flood = Array.from({ length: 50 }, (_, i) => signer.answer('flooder', nonce(`f${i}`)));
  const settled = await Promise.allSettled([...flood, signer.answer('honest', nonce('h'))]);
  const refused = settled.filter((r) => r.status === 'rejected');
  // One is being signed at once, two wait: the other 47 are refused.
  assert.equal(refused.length, 47);
  assert.ok(refused.every((r) => (r as PromiseRejectedResult).reason instanceof AttestationError));
  assert.deepEqual(order, ['f0', 'f1', 'h', 'f2'], 'the honest peer waits behind two of the flood, not 50');
  assert.equal(signer.pending, 0);
});

test('each peer earns answers at a bounded rate', async () => {
  let now = 0;
  const signer = new FairChallengeSigner(async (n) => n, {
    perPeerIntervalMs: 1000,
    perPeerBurst: 2,
    clock: () => now,
  });
  await signer.answer('p', nonce('1'));
  await signer.answer('p', nonce('2'));
  await assert.rejects(signer.answer('p', nonce('3')), /faster than it is answered/);
  await signer.answer('q', nonce('1')); // another peer has its own budget
  now += 1000;
  await signer.answer('p', nonce('4'));
});
