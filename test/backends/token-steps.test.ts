import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { TokenSteps } from '../../src/backends/llama/token-steps.ts';

test('a lone generation steps without waiting', async () => {
  const steps = new TokenSteps();
  steps.join();
  let passed = false;
  void steps.arrive().then(() => {
    passed = true;
  });
  await Promise.resolve();
  assert.equal(passed, true);
  steps.leave();
});

test('generations are released together once every member has its token', async () => {
  const steps = new TokenSteps(10_000);
  for (let i = 0; i < 3; i++) steps.join();
  const released: number[] = [];
  const a = steps.arrive().then(() => released.push(1));
  const b = steps.arrive().then(() => released.push(2));
  await nextTurn();
  await nextTurn();
  assert.equal(released.length, 0, 'two of three arrived: nobody moves on');
  const c = steps.arrive().then(() => released.push(3));
  await Promise.all([a, b, c]);
  assert.deepEqual(released, [1, 2, 3]);
});

test('a slow member holds the others only for the bound', async () => {
  const steps = new TokenSteps(20);
  steps.join();
  steps.join();
  const started = performance.now();
  await steps.arrive();
  const waited = performance.now() - started;
  assert.ok(waited >= 15, `released after ${waited} ms, before the bound`);
});

test('a member that leaves releases those waiting for it', async () => {
  const steps = new TokenSteps(60_000);
  steps.join();
  steps.join();
  const waiting = steps.arrive();
  steps.leave();
  await waiting;
});

test('output is delivered in order, after the step is released, and at once on flush', async () => {
  const steps = new TokenSteps(60_000);
  steps.join();
  steps.join();
  const out: string[] = [];
  steps.deliver(() => out.push('a'));
  const first = steps.arrive();
  steps.deliver(() => out.push('b'));
  for (let i = 0; i < 3; i++) await nextTurn();
  assert.equal(out.length, 0, 'held while the step gathers');
  const second = steps.arrive();
  await Promise.all([first, second]);
  for (let i = 0; i < 3; i++) await nextTurn();
  assert.deepEqual(out, ['a', 'b']);
  steps.deliver(() => out.push('c'));
  steps.flush();
  assert.deepEqual(out, ['a', 'b', 'c']);
});
