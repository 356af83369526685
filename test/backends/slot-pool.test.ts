import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SlotPool } from '../../src/backends/slot-pool.ts';
import { NoCapacityError } from '../../src/errors.ts';

const never = new AbortController().signal;

describe('SlotPool', () => {
  it('hands out free slots, queues FIFO, and refuses beyond the queue bound', async () => {
    const pool = new SlotPool(['a', 'b'], 2);
    const x = await pool.acquire(never);
    const y = await pool.acquire(never);
    assert.deepEqual(new Set([x, y]), new Set(['a', 'b']));
    const order: string[] = [];
    const w1 = pool.acquire(never).then((s) => order.push(`w1:${s}`));
    const w2 = pool.acquire(never).then((s) => order.push(`w2:${s}`));
    assert.equal(pool.waiting, 2);
    await assert.rejects(
      pool.acquire(never),
      (e: unknown) => e instanceof NoCapacityError && e.code === 'no_capacity',
    );
    pool.release(x);
    pool.release(y);
    await Promise.all([w1, w2]);
    assert.deepEqual(order, [`w1:${x}`, `w2:${y}`]);
    assert.equal(pool.available, 0);
  });

  it('drops an aborted waiter without losing the slot', async () => {
    const pool = new SlotPool([1], 4);
    const held = await pool.acquire(never);
    const controller = new AbortController();
    const waiting = pool.acquire(controller.signal);
    controller.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    assert.equal(pool.waiting, 0);
    pool.release(held);
    assert.equal(pool.available, 1);
    assert.equal(await pool.acquire(never), 1);
  });

  it('rejects waiters and new requests after close', async () => {
    const pool = new SlotPool([1], 4);
    await pool.acquire(never);
    const waiting = pool.acquire(never);
    pool.close();
    await assert.rejects(waiting, NoCapacityError);
    await assert.rejects(pool.acquire(never), NoCapacityError);
  });
});
