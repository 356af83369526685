import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type HostView, hasFreeSlot, orderHosts } from '../../src/routing/host-choice.ts';
import { LoadBoard } from '../../src/routing/load-board.ts';
import { LocalLoad, MinuteCounter } from '../../src/routing/local-load.ts';

function view(id: string, over: Partial<HostView<string>> = {}): HostView<string> {
  return {
    host: id,
    id,
    local: false,
    slots: 2,
    load: 0,
    rttMs: 1,
    preference: 0,
    passedOver: false,
    ...over,
  };
}

/** A deterministic stand-in for Math.random. */
function sequence(...values: number[]) {
  let i = 0;
  return () => values[i++ % values.length]!;
}

describe('host choice', () => {
  test('the local backend goes first only while it has a free slot', () => {
    const local = view('local', { local: true, load: 1 });
    const remote = view('r1');
    assert.equal(orderHosts([remote, local]).order[0]!.id, 'local');
    const full = view('local', { local: true, load: 2 });
    const picked = orderHosts([full, remote]);
    assert.equal(picked.order[0]!.id, 'r1');
    assert.deepEqual(
      picked.order.map((v) => v.id),
      ['r1', 'local'],
    );
  });

  test('power of two choices takes the less utilised of the pair, then the lower RTT', () => {
    const hosts = [view('a', { load: 1 }), view('b', { load: 0 }), view('c', { load: 1, rttMs: 0.5 })];
    // The pair is drawn from the free hosts in failover order [b, c, a].
    const ca = orderHosts(hosts, { random: sequence(0.4, 0.99) });
    assert.equal(ca.order[0]!.id, 'c', 'same load: lower RTT');
    const ab = orderHosts(hosts, { random: sequence(0.99, 0) });
    assert.equal(ab.order[0]!.id, 'b', 'lower utilisation wins');
    // failover order: free hosts by utilisation then RTT
    assert.deepEqual(
      ab.order.map((v) => v.id),
      ['b', 'c', 'a'],
    );
  });

  test('utilisation counts slots: 3 of 8 beats 1 of 2', () => {
    const big = view('big', { slots: 8, load: 3 });
    const small = view('small', { slots: 2, load: 1 });
    assert.equal(orderHosts([small, big], { random: sequence(0, 0) }).order[0]!.id, 'big');
  });

  test('a full or passed-over host is never picked while another has room', () => {
    for (let i = 0; i < 20; i++) {
      const r = i / 20;
      const order = orderHosts(
        [view('full', { load: 2 }), view('over', { passedOver: true }), view('free', { load: 1 })],
        { random: sequence(r, 0.99 - r) },
      );
      assert.equal(order.order[0]!.id, 'free');
      assert.equal(order.free, true);
      assert.equal(order.order.at(-1)!.id, 'over', 'passed-over hosts are tried last');
    }
  });

  test('when every host is full the order says so (the caller waits)', () => {
    const order = orderHosts([view('a', { load: 2 }), view('b', { load: 3 })]);
    assert.equal(order.free, false);
    assert.deepEqual(
      order.order.map((v) => v.id),
      ['a', 'b'],
    );
  });

  test('a host that states no capacity is never counted full', () => {
    const old = view('old', { slots: undefined, load: 5 });
    assert.equal(hasFreeSlot(old), true);
    assert.equal(orderHosts([view('a', { load: 2 }), old]).order[0]!.id, 'old');
  });

  test('affinity picks the previous host while it has room, not when full', () => {
    const hosts = [view('a'), view('b', { load: 1 }), view('local', { local: true })];
    assert.equal(orderHosts(hosts, { affinity: 'b' }).order[0]!.id, 'b');
    const busy = [view('a'), view('b', { load: 2 })];
    assert.equal(orderHosts(busy, { affinity: 'b' }).order[0]!.id, 'a');
  });

  test('a preferred (attested) host is filled first, the others take the rest', () => {
    const trusted = view('t', { preference: 5, load: 1 });
    const plain = view('p', { preference: 0, load: 0 });
    for (const r of [0, 0.5, 0.99]) {
      assert.equal(orderHosts([trusted, plain], { random: sequence(r, 0.99 - r) }).order[0]!.id, 't');
    }
    const full = view('t', { preference: 5, load: 2 });
    assert.equal(orderHosts([full, plain]).order[0]!.id, 'p');
  });
});

describe('load board', () => {
  test('own counts are exact and immediate; ending twice counts once', () => {
    const board = new LoadBoard();
    const end1 = board.begin('h', 'm');
    board.begin('h', 'm');
    assert.equal(board.own('h', 'm'), 2);
    end1();
    end1();
    assert.equal(board.own('h', 'm'), 1);
    assert.deepEqual(board.estimate('h', 'm', 4), { slots: 4, load: 1, servedLastMinute: undefined });
  });

  test('a report adds other senders’ load without counting ours twice', () => {
    let now = 1_000;
    const board = new LoadBoard({ clock: () => now, staleAfterMs: 5_000 });
    board.begin('h', 'm'); // ours, already in the host's report below
    board.report('h', [{ modelName: 'm', slots: 2, inFlight: 2, queued: 1, servedLastMinute: 7 }]);
    assert.deepEqual(board.estimate('h', 'm', undefined), { slots: 2, load: 3, servedLastMinute: 7 });
    board.begin('h', 'm'); // started after the report
    assert.equal(board.estimate('h', 'm', undefined).load, 4);
    now += 6_000; // the report is stale: only what we know for sure
    assert.deepEqual(board.estimate('h', 'm', 2), { slots: 2, load: 2, servedLastMinute: undefined });
  });

  test('pass-over expires, and the table stays bounded', () => {
    let now = 0;
    const board = new LoadBoard({ clock: () => now, maxPassedOver: 3 });
    board.passOver('h', 'm', 1_000);
    assert.equal(board.passedOver('h', 'm'), true);
    assert.equal(board.passedOver('h', 'other'), false);
    now = 1_001;
    assert.equal(board.passedOver('h', 'm'), false);
    for (let i = 0; i < 10; i++) board.passOver(`h${i}`, 'm', 60_000);
    assert.equal(board.passedOver('h9', 'm'), true);
    assert.equal(board.passedOver('h0', 'm'), false, 'the oldest entries were evicted');
  });

  test('changes notify listeners (the wait queue re-checks)', () => {
    const board = new LoadBoard();
    let calls = 0;
    board.onChange(() => calls++);
    board.begin('h', 'm')();
    board.report('h', []);
    board.forget('h');
    assert.equal(calls, 3);
  });
});

describe('local load', () => {
  test('running, queued and served per minute', () => {
    let now = 0;
    const load = new LocalLoad({ models: () => [{ name: 'm', slots: 2 }], clock: () => now });
    const ends = [load.begin('m'), load.begin('m'), load.begin('m')];
    assert.deepEqual(load.snapshot(), [
      { modelName: 'm', slots: 2, inFlight: 2, queued: 1, servedLastMinute: 0 },
    ]);
    ends[0]!(true);
    ends[1]!(false);
    now = 30_000;
    ends[2]!(true);
    assert.deepEqual(load.snapshot()[0], {
      modelName: 'm',
      slots: 2,
      inFlight: 0,
      queued: 0,
      servedLastMinute: 2,
    });
    now = 61_000;
    assert.equal(load.snapshot()[0]!.servedLastMinute, 1, 'the first answer is over a minute old');
  });

  test('the minute counter forgets buckets it wraps around to', () => {
    const counter = new MinuteCounter();
    counter.add(0);
    counter.add(500);
    counter.add(59_999);
    assert.equal(counter.count(59_999), 3);
    counter.add(60_000); // same bucket index as second 0
    assert.equal(counter.count(60_000), 2);
    assert.equal(counter.count(200_000), 0);
  });
});
