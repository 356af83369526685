import assert from 'node:assert/strict';
import { createServer, Socket } from 'node:net';
import { test } from 'node:test';
import type { Connection } from '@libp2p/interface';
import { batchSocketWrites } from '../../src/mesh/socket-batching.ts';
import { clusterPerTest, libp2pOf, waitFor } from './helpers.ts';

const cluster = clusterPerTest();

test('writes made in one event-loop turn reach the socket as one batch, in order', async () => {
  const received: Buffer[] = [];
  const server = createServer((s) => s.on('data', (d) => received.push(d)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const socket = new Socket();
  await new Promise<void>((r) => socket.connect((server.address() as { port: number }).port, '127.0.0.1', r));
  const writes: string[] = [];
  const maConn = {
    socket,
    sendData(data: string) {
      writes.push(data);
      socket.write(data);
      return { canSendMore: true };
    },
  };
  assert.equal(batchSocketWrites({ maConn } as unknown as Connection), true);
  maConn.sendData('a');
  maConn.sendData('b');
  maConn.sendData('c');
  assert.equal(socket.writableCorked, 1, 'held until the end of the turn');
  await new Promise((r) => setImmediate(r));
  assert.equal(socket.writableCorked, 0);
  await waitFor(() => Buffer.concat(received).toString() === 'abc', 'bytes arrive');
  assert.deepEqual(writes, ['a', 'b', 'c']);
  socket.destroy();
  server.close();
});

test('anything that is not a TCP socket connection is left alone', () => {
  assert.equal(batchSocketWrites({} as Connection), false);
  assert.equal(batchSocketWrites({ maConn: { socket: {}, sendData() {} } } as unknown as Connection), false);
});

test('the libp2p connections this mesh makes have the shape socket batching relies on', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  await b.join(a.inviteToken());
  await waitFor(() => a.peer(b.endpointId) !== undefined, 'connected');
  // A libp2p upgrade that moves these internals fails here instead of silently losing batching.
  const connection = libp2pOf(a).getConnections()[0] as unknown as {
    maConn?: { socket?: unknown; sendData?: unknown };
  };
  assert.ok(connection.maConn?.socket instanceof Socket);
  assert.equal(typeof connection.maConn?.sendData, 'function');
  assert.notEqual(
    connection.maConn?.sendData,
    Object.getPrototypeOf(connection.maConn).sendData,
    'the mesh wrapped it',
  );
});
