import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AllHostsBusyError } from '../../src/errors.ts';
import { readAll } from '../../src/http/exchange.ts';
import { encodeFrame } from '../../src/mesh/frames.ts';
import { errorResponse } from '../../src/openai/errors.ts';
import { AffinityTable, conversationKeys } from '../../src/routing/affinity.ts';
import { CapacityQueue } from '../../src/routing/capacity-queue.ts';
import {
  decodeLoadReport,
  encodeLoadReport,
  LoadReportError,
  MAX_REPORTED_MODELS,
} from '../../src/routing/load-reports.ts';

describe('capacity queue', () => {
  test('waiters go in arrival order as capacity frees, and a newcomer does not jump the line', async () => {
    const queue = new CapacityQueue({ timeoutMs: 5_000 });
    let free = 0;
    const take = (label: string) => () => {
      if (free === 0) return undefined;
      free--;
      return label;
    };
    const order: string[] = [];
    const signal = new AbortController().signal;
    const first = queue.acquire('m', take('first'), signal).then((v) => order.push(v));
    const second = queue.acquire('m', take('second'), signal).then((v) => order.push(v));
    assert.equal(queue.waitingFor('m'), 2);
    free = 1;
    // A newcomer while others wait queues behind them even though a slot is free now.
    const third = queue.acquire('m', take('third'), signal).then((v) => order.push(v));
    queue.notify();
    free = 2;
    queue.notify();
    await Promise.all([first, second, third]);
    assert.deepEqual(order, ['first', 'second', 'third']);
    assert.equal(queue.waiting, 0);
  });

  test('past the deadline: 429 with Retry-After in the OpenAI error shape', async () => {
    const queue = new CapacityQueue({ timeoutMs: 50 });
    const error = await queue.acquire('m', () => undefined, new AbortController().signal).catch((e) => e);
    assert.ok(error instanceof AllHostsBusyError);
    const response = errorResponse(error);
    assert.equal(response.status, 429);
    assert.match(response.headers['retry-after'] ?? '', /^[1-9]\d*$/);
    const body = JSON.parse((await readAll(response.body)).toString('utf8'));
    assert.equal(body.error.code, 'all_hosts_busy');
    assert.equal(typeof body.error.message, 'string');
    assert.equal(body.error.param, null);
    assert.equal(queue.waiting, 0);
  });

  test('the queue is bounded: beyond it, 429 at once', async () => {
    const queue = new CapacityQueue({ maxWaiting: 2, timeoutMs: 10_000 });
    const controller = new AbortController();
    const waiting = [1, 2].map(() => queue.acquire('m', () => undefined, controller.signal).catch((e) => e));
    const refused = await queue.acquire('m', () => undefined, controller.signal).catch((e) => e);
    assert.ok(refused instanceof AllHostsBusyError);
    controller.abort(new Error('client gone'));
    for (const w of await Promise.all(waiting)) assert.equal((w as Error).message, 'client gone');
    assert.equal(queue.waiting, 0, 'aborted waiters leave the queue');
  });

  test('a free slot now means no wait at all', async () => {
    const queue = new CapacityQueue();
    assert.equal(await queue.acquire('m', () => 'now', new AbortController().signal), 'now');
    assert.equal(queue.waiting, 0);
  });
});

describe('conversation affinity', () => {
  const turn1 = [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: 'hello' },
  ];
  const turn2 = [...turn1, { role: 'assistant', content: 'hi!' }, { role: 'user', content: 'more' }];
  const turn3 = [...turn2, { role: 'assistant', content: 'ok' }, { role: 'user', content: 'again' }];

  test('a later turn finds the host of the earlier one; other conversations do not', () => {
    const table = new AffinityTable();
    table.remember(conversationKeys('m', turn1), 'host-a');
    assert.equal(table.lookup(conversationKeys('m', turn2)), 'host-a');
    table.remember(conversationKeys('m', turn2), 'host-b');
    assert.equal(table.lookup(conversationKeys('m', turn3)), 'host-b', 'the longest known prefix wins');
    assert.equal(table.lookup(conversationKeys('other-model', turn2)), undefined, 'keys are per model');
    const other = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'bye' },
      ...turn2.slice(2),
    ];
    assert.equal(table.lookup(conversationKeys('m', other)), undefined);
    assert.equal(
      table.lookup(conversationKeys('m', turn1)),
      undefined,
      'the same request is not its own turn',
    );
  });

  test('keys are digests: no message text in them', () => {
    const keys = conversationKeys('m', [{ role: 'user', content: 'SECRET-MARKER' }]);
    assert.equal(keys.length, 1);
    assert.ok(!keys[0]!.includes('SECRET'));
    assert.equal(Buffer.from(keys[0]!, 'base64').byteLength, 32);
  });

  test('entries expire, the table is bounded, and a departed host is forgotten', () => {
    let now = 0;
    const table = new AffinityTable({ maxEntries: 3, ttlMs: 1_000, clock: () => now });
    table.remember(conversationKeys('m', turn1), 'a');
    now = 1_001;
    assert.equal(table.lookup(conversationKeys('m', turn2)), undefined);
    for (let i = 0; i < 10; i++)
      table.remember(conversationKeys('m', [{ role: 'user', content: `c${i}` }]), 'b');
    assert.equal(table.size, 3);
    table.forgetHost('b');
    assert.equal(table.size, 0);
  });
});

describe('load report wire format', () => {
  test('round trip', () => {
    const models = [
      { modelName: 'a', slots: 4, inFlight: 3, queued: 0, servedLastMinute: 12 },
      { modelName: 'b', slots: 1, inFlight: 1, queued: 5, servedLastMinute: 0 },
    ];
    assert.deepEqual(decodeLoadReport(encodeLoadReport(models)), models);
    assert.ok(encodeFrame(encodeLoadReport(models)).byteLength < 40, 'a report is a few bytes per model');
  });

  test('hostile reports are refused, not believed', () => {
    assert.throws(() => decodeLoadReport(Uint8Array.of(0xff, 0xff, 0xff)), LoadReportError);
    const many = Array.from({ length: MAX_REPORTED_MODELS + 1 }, (_, i) => ({
      modelName: `m${i}`,
      slots: 1,
      inFlight: 0,
      queued: 0,
      servedLastMinute: 0,
    }));
    // The encoder never writes more than the cap; a hand-made oversize report is refused.
    assert.equal(decodeLoadReport(encodeLoadReport(many)).length, MAX_REPORTED_MODELS);
    const oversize = Buffer.concat(many.map((m) => Buffer.from(encodeLoadReport([m]))));
    assert.throws(() => decodeLoadReport(oversize), /too many models/);
    const absurd = encodeLoadReport([
      { modelName: 'x', slots: 1, inFlight: 0, queued: 4_000_000_000, servedLastMinute: 0 },
    ]);
    assert.throws(() => decodeLoadReport(absurd), /out of range/);
    assert.throws(
      () =>
        decodeLoadReport(
          encodeLoadReport([{ modelName: '', slots: 1, inFlight: 0, queued: 0, servedLastMinute: 0 }]),
        ),
      /model name/,
    );
  });
});

describe('capacity queue re-entrancy', () => {
  test('a take that notifies again is not run twice for the same waiter', async () => {
    const queue = new CapacityQueue({ timeoutMs: 5_000 });
    let free = 0;
    let taken = 0;
    const take = () => {
      if (free === 0) return undefined;
      free--;
      taken++;
      queue.notify(); // taking a place is a load change, as LocalLoad.begin reports it
      return 'slot';
    };
    const waiters = [1, 2].map(() => queue.acquire('m', take, new AbortController().signal));
    free = 1;
    queue.notify();
    assert.equal(await waiters[0], 'slot');
    assert.equal(taken, 1, 'one place taken for one waiter');
    assert.equal(queue.waitingFor('m'), 1);
    free = 1;
    queue.notify();
    assert.equal(await waiters[1], 'slot');
    assert.equal(taken, 2);
  });
});
