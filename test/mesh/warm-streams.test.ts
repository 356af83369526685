import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { WarmStreamPool } from '../../src/mesh/warm-streams.ts';
import { clusterPerTest, readAll, waitFor } from './helpers.ts';

interface FakeStream {
  id: number;
  open: boolean;
  discarded: boolean;
}

function fakePool(options: { size?: number; refillAt?: number; idleMs?: number; failOpens?: boolean } = {}) {
  let now = 0;
  let next = 0;
  const opened: FakeStream[] = [];
  const errors: string[] = [];
  const pool = new WarmStreamPool<FakeStream>({
    size: options.size ?? 2,
    ...(options.refillAt === undefined ? {} : { refillAt: options.refillAt }),
    idleMs: options.idleMs ?? 1_000,
    clock: () => now,
    open: async () => {
      if (options.failOpens) throw new Error('unreachable');
      const stream = { id: next++, open: true, discarded: false };
      opened.push(stream);
      return stream;
    },
    usable: (s) => s.open,
    discard: (s) => {
      s.discarded = true;
    },
    onOpenError: (_peer, error) => errors.push((error as Error).message),
  });
  return { pool, opened, errors, advance: (ms: number) => (now += ms) };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('WarmStreamPool', () => {
  test('holds nothing for a peer until it is used; refills to size after a take', async () => {
    const { pool, opened } = fakePool();
    pool.refill('a');
    await settle();
    assert.equal(opened.length, 0, 'a peer never taken from gets no warm streams');
    assert.equal(pool.take('a'), undefined, 'first use: the caller opens its own stream');
    pool.refill('a');
    pool.refill('a'); // concurrent refills do not over-open
    await settle();
    assert.equal(opened.length, 2);
    assert.equal(pool.size('a'), 2);
    assert.equal(pool.take('a')?.id, 0);
    assert.equal(pool.size('a'), 1);
    pool.stop();
  });

  test('waits until a peer is down to refillAt, then opens the whole top-up at once', async () => {
    const { pool, opened } = fakePool({ size: 4, refillAt: 1 });
    pool.take('a');
    pool.refill('a');
    await settle();
    assert.equal(opened.length, 4);
    for (const left of [3, 2]) {
      pool.take('a');
      pool.refill('a');
      await settle();
      assert.equal(pool.size('a'), left, 'above refillAt: nothing opened');
    }
    pool.take('a');
    pool.refill('a');
    pool.refill('a');
    await settle();
    assert.equal(opened.length, 7, 'down to refillAt: three opened together, back to size');
    assert.equal(pool.size('a'), 4);
    pool.stop();
  });

  test('skips and discards streams that closed while they waited', async () => {
    const { pool, opened } = fakePool();
    pool.take('a');
    pool.refill('a');
    await settle();
    opened[0]!.open = false;
    assert.equal(pool.take('a')?.id, 1);
    assert.ok(opened[0]!.discarded);
    pool.stop();
  });

  test('a peer unused for idleMs loses its streams; drop and stop discard everything', async () => {
    const { pool, opened, advance } = fakePool({ idleMs: 1_000 });
    for (const peer of ['a', 'b', 'c']) {
      pool.take(peer);
      pool.refill(peer);
    }
    await settle();
    advance(600);
    pool.take('b');
    advance(600);
    pool.sweep();
    assert.equal(pool.size('a'), 0, 'idle peer swept');
    assert.equal(pool.size('b'), 1, 'recently used peer kept');
    pool.drop('b');
    assert.equal(pool.size('b'), 0);
    pool.stop();
    assert.equal(pool.take('c'), undefined, 'a stopped pool hands out nothing');
    assert.ok(
      opened.every((s) => s.discarded || s.id === 2),
      'only the one taken stream is not discarded',
    );
  });

  test('a stream that finishes opening after its peer was dropped is discarded, not pooled', async () => {
    const { pool, opened } = fakePool();
    pool.take('a');
    pool.refill('a');
    pool.drop('a');
    await settle();
    assert.equal(pool.size('a'), 0);
    assert.ok(opened.every((s) => s.discarded));
    pool.stop();
  });

  test('failed opens are reported and leave the pool empty', async () => {
    const { pool, errors } = fakePool({ failOpens: true });
    pool.take('a');
    pool.refill('a');
    await settle();
    assert.deepEqual(errors, ['unreachable', 'unreachable']);
    assert.equal(pool.take('a'), undefined);
    pool.stop();
  });
});

describe('warm streams on a real mesh', () => {
  const cluster = clusterPerTest();

  test('after one request a host has warm streams ready; each carries exactly one request', async () => {
    const client = await cluster().node();
    const host = await cluster().node();
    const requests: string[] = [];
    let emptyStreams = 0;
    host.handle(PROTOCOL_HTTP, async (stream) => {
      const body = (await readAll(stream.source)).toString();
      if (body === '') emptyStreams++;
      else requests.push(body);
      await stream.write(Buffer.from(`echo:${body}`));
      await stream.closeWrite();
    });
    await host.join(client.inviteToken());
    await waitFor(() => client.peer(host.endpointId) !== undefined, 'host known');

    // Default pool: 8 streams, topped up once down to 2.
    const expected = [8, 7, 6, 5, 4, 3, 8];
    for (const [i, ready] of expected.entries()) {
      const stream = await client.openStream(host.endpointId, PROTOCOL_HTTP);
      await stream.write(Buffer.from(`request-${i}`));
      await stream.closeWrite();
      assert.equal((await readAll(stream.source)).toString(), `echo:request-${i}`);
      await waitFor(() => client.warmStreamCount(host.endpointId) === ready, `${ready} warm streams`);
    }
    assert.deepEqual(
      requests,
      expected.map((_, i) => `request-${i}`),
    );
    assert.equal(emptyStreams, 0, 'no warm stream was closed unused yet');
  });
});
