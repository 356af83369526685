import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PunchBackoff } from '../../src/mesh/punch-backoff.ts';

const bounds = { firstMs: 30_000, maxMs: 600_000, maxPeers: 3 };

test('a failed round waits 30 s, then twice as long each round, up to the maximum', () => {
  let now = 0;
  const backoff = new PunchBackoff(bounds, () => now);
  const waits: number[] = [];
  for (let round = 0; round < 7; round++) {
    assert.equal(backoff.mayTry('a'), true);
    const wait = backoff.failed('a');
    waits.push(wait);
    now += wait - 1;
    assert.equal(backoff.mayTry('a'), false);
    now += 1;
  }
  assert.deepEqual(waits, [30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000]);
});

test('a success forgets the peer; other peers are not held back', () => {
  const now = 0;
  const backoff = new PunchBackoff(bounds, () => now);
  backoff.failed('a');
  assert.equal(backoff.mayTry('b'), true);
  backoff.succeeded('a');
  assert.equal(backoff.mayTry('a'), true);
  assert.equal(backoff.failed('a'), 30_000);
});

test('at most maxPeers peers are remembered; the oldest goes first', () => {
  const backoff = new PunchBackoff(bounds, () => 0);
  for (const peer of ['a', 'b', 'c', 'd']) backoff.failed(peer);
  assert.equal(backoff.size, 3);
  assert.equal(backoff.mayTry('a'), true);
  assert.equal(backoff.mayTry('d'), false);
});
