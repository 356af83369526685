import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Connection } from '@libp2p/interface';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { raceDial } from '../../src/mesh/race-dial.ts';

const P = '/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp';
const R = '/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA';
const TCP = multiaddr(`/ip4/192.168.1.10/tcp/4001${P}`);
const QUIC = multiaddr(`/ip4/192.168.1.10/udp/4001/quic-v1${P}`);
const CIRCUIT = multiaddr(`${R}/p2p-circuit${P}`);

interface FakeDial {
  ma: string;
  at: number;
  connection: FakeConnection;
  succeed(): void;
  fail(): void;
  aborted: boolean;
}
interface FakeConnection {
  remoteAddr: Multiaddr;
  limits: undefined;
  closed: boolean;
  close(): Promise<void>;
  abort(): void;
}

/** A transport manager whose dials succeed or fail when the test says so. */
function fakeTransports() {
  const start = performance.now();
  const dials: FakeDial[] = [];
  const transportManager = {
    dial: (ma: Multiaddr, options: { signal: AbortSignal }) =>
      new Promise<Connection>((resolve, reject) => {
        const connection: FakeConnection = {
          remoteAddr: ma,
          limits: undefined,
          closed: false,
          close: async () => {
            connection.closed = true;
          },
          abort: () => {
            connection.closed = true;
          },
        };
        const dial: FakeDial = {
          ma: ma.toString(),
          at: performance.now() - start,
          connection,
          succeed: () => resolve(connection as unknown as Connection),
          fail: () => reject(new Error(`${ma} refused`)),
          aborted: false,
        };
        options.signal.addEventListener('abort', () => {
          dial.aborted = true;
          reject(options.signal.reason);
        });
        dials.push(dial);
      }),
  };
  const find = (ma: Multiaddr) => dials.find((d) => d.ma === ma.toString());
  return { transportManager, dials, find };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('TCP first, QUIC a moment later, circuits after the head start; the first connection wins', async () => {
  const { transportManager, find } = fakeTransports();
  const won = raceDial({
    transportManager,
    direct: [QUIC, TCP],
    circuits: [CIRCUIT],
    headStartMs: 3_000,
    signal: new AbortController().signal,
  });
  await tick(20);
  assert.ok(find(TCP), 'TCP is dialled at once');
  assert.equal(find(QUIC), undefined, 'QUIC waits for TCP');
  await tick(1_100);
  assert.ok(find(QUIC), 'QUIC follows');
  assert.equal(find(CIRCUIT), undefined, 'circuits wait for their head start');
  find(QUIC)!.succeed();
  const connection = await won;
  assert.equal(connection.remoteAddr.toString(), QUIC.toString());
  assert.ok(find(TCP)!.aborted, 'the other attempts stop');
  await tick(2_000);
  assert.equal(find(CIRCUIT), undefined, 'no circuit once a direct connection won');
});

test('circuits start at once when every direct address failed', async () => {
  const { transportManager, find } = fakeTransports();
  const won = raceDial({
    transportManager,
    direct: [TCP],
    circuits: [CIRCUIT],
    headStartMs: 10_000,
    signal: new AbortController().signal,
  });
  await tick(10);
  find(TCP)!.fail();
  await tick(10);
  assert.ok(find(CIRCUIT), 'the circuit is dialled without waiting');
  find(CIRCUIT)!.succeed();
  assert.equal((await won).remoteAddr.toString(), CIRCUIT.toString());
});

test('a direct connection that arrives after a relayed winner is kept; a late duplicate is closed', async () => {
  const { transportManager, find } = fakeTransports();
  const won = raceDial({
    transportManager,
    direct: [TCP],
    circuits: [CIRCUIT],
    headStartMs: 10,
    signal: new AbortController().signal,
  });
  await tick(40);
  find(CIRCUIT)!.succeed();
  await won;
  assert.equal(find(TCP)!.aborted, false, 'the direct attempt goes on');
  find(TCP)!.succeed();
  await tick(10);
  assert.equal(find(TCP)!.connection.closed, false, 'the late direct connection stays for later streams');

  const second = fakeTransports();
  const both = raceDial({
    transportManager: second.transportManager,
    direct: [TCP, multiaddr(`/ip4/10.8.0.2/tcp/4001${P}`)],
    circuits: [],
    headStartMs: 10,
    signal: new AbortController().signal,
  });
  await tick(10);
  const [first, late] = second.dials;
  // Both connect in the same instant: the second arrives after the first has won.
  first!.succeed();
  late!.succeed();
  await both;
  await tick(10);
  assert.ok(late!.connection.closed, 'a second direct connection is closed');
});

test('fails with every error once every stage failed, and reports failed direct addresses', async () => {
  const { transportManager, dials } = fakeTransports();
  const failed: string[] = [];
  const won = raceDial({
    transportManager,
    direct: [TCP, QUIC],
    circuits: [CIRCUIT],
    headStartMs: 10_000,
    signal: new AbortController().signal,
    onFailed: (ma) => failed.push(ma.toString()),
  });
  for (let i = 0; i < 3; i++) {
    await tick(10);
    for (const dial of dials.splice(0)) dial.fail();
  }
  await assert.rejects(won, (err: AggregateError) => err.errors.length === 3);
  assert.deepEqual(failed.sort(), [QUIC.toString(), TCP.toString()].sort());
});
