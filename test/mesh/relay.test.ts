import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { ConfigError } from '../../src/errors.ts';
import { PROTOCOL_HTTP, type StreamTapEvent } from '../../src/mesh/types.ts';
import { clusterPerTest, readAll, waitFor } from './helpers.ts';

const cluster = clusterPerTest();

test('a NATed host is reachable only through a relay, and 1 MB passes uncut', async () => {
  const relay = await cluster().node({ relay: true });
  const host = await cluster().node({ reachableOnlyViaRelay: true });
  const payload = randomBytes(1024 * 1024);
  host.handle(PROTOCOL_HTTP, async (stream) => {
    const body = await readAll(stream.source);
    // Echo back the request, then the big answer.
    await stream.write(Buffer.from(String(body.byteLength).padStart(10, '0')));
    for (let i = 0; i < payload.byteLength; i += 64 * 1024)
      await stream.write(payload.subarray(i, i + 64 * 1024));
    await stream.closeWrite();
  });
  await host.join(relay.inviteToken());
  // The host advertises a circuit address only, once its reservation is made.
  await waitFor(() => host.addresses().some((a) => a.includes('/p2p-circuit')), 'relay reservation');
  assert.ok(
    host.addresses().every((a) => a.includes('/p2p-circuit')),
    'no direct address advertised',
  );

  const client = await cluster().node();
  await client.join(relay.inviteToken());
  await waitFor(
    () =>
      client.peer(host.endpointId)?.announcement.listenAddrs.some((a) => a.includes('/p2p-circuit')) === true,
    'client learns the host circuit address',
  );
  assert.equal(client.peer(host.endpointId)!.transitive, true);

  const stream = await client.openStream(host.endpointId, PROTOCOL_HTTP);
  await stream.write(payload);
  await stream.closeWrite();
  const reply = await readAll(stream.source);
  assert.equal(reply.subarray(0, 10).toString(), String(payload.byteLength).padStart(10, '0'));
  assert.ok(reply.subarray(10).equals(payload), '1 MB answer arrived intact through the relay');

  const conns = client.connectionsTo(host.endpointId);
  assert.ok(conns.length > 0);
  assert.ok(
    conns.every((c) => c.remoteAddr.includes('/p2p-circuit')),
    'client reaches the host only over a relayed circuit',
  );
});

test('forwarding through a middle node: the middle only pipes the bytes', async () => {
  const taps: StreamTapEvent[] = [];
  const target = await cluster().node();
  const middle = await cluster().node({ streamTap: (e) => taps.push(e) });
  const client = await cluster().node();
  const request = randomBytes(200 * 1024);
  const response = randomBytes(300 * 1024);
  let seenRemote = '';
  target.handle(PROTOCOL_HTTP, async (stream, remote) => {
    seenRemote = remote;
    const body = await readAll(stream.source);
    assert.ok(body.equals(request));
    await stream.write(response);
    await stream.closeWrite();
  });
  await middle.join(target.inviteToken());
  await client.join(middle.inviteToken());
  await waitFor(() => client.peer(target.endpointId) !== undefined, 'client learns the target');

  const stream = await client.openForwardedStream(middle.endpointId, target.endpointId);
  await stream.write(request);
  await stream.closeWrite();
  const reply = await readAll(stream.source);
  assert.ok(reply.equals(response));
  // The target sees the middle as its direct remote; the client never connected to it.
  assert.equal(seenRemote, middle.endpointId);
  assert.equal(client.connectionsTo(target.endpointId).length, 0);

  const sum = (filter: (e: StreamTapEvent) => boolean) =>
    Buffer.concat(taps.filter(filter).map((e) => Buffer.from(e.bytes)));
  const fromClient = sum((e) => e.remote === client.endpointId && e.direction === 'in');
  const toTarget = sum((e) => e.remote === target.endpointId && e.direction === 'out');
  const fromTarget = sum((e) => e.remote === target.endpointId && e.direction === 'in');
  const toClient = sum((e) => e.remote === client.endpointId && e.direction === 'out');
  // The middle read the 32-byte target id, then passed every byte through unchanged.
  assert.ok(fromClient.subarray(0, 32).equals(Buffer.from(target.endpointId, 'hex')));
  assert.ok(fromClient.subarray(32).equals(request));
  assert.ok(toTarget.equals(request));
  assert.ok(fromTarget.equals(response));
  assert.ok(toClient.equals(response));
});

test('forwarding refuses an unknown target', async () => {
  const middle = await cluster().node();
  const client = await cluster().node();
  await client.join(middle.inviteToken());
  await waitFor(() => middle.peer(client.endpointId) !== undefined, 'middle knows the client');
  const unknown = 'ab'.repeat(32);
  const stream = await client.openForwardedStream(middle.endpointId, unknown);
  await assert.rejects(readAll(stream.source));
});

test('ordinary nodes also hold a relay circuit address once a mesh relay is connected', async () => {
  const relay = await cluster().node({ relay: true });
  const node = await cluster().node();
  await node.join(relay.inviteToken());
  await waitFor(() => node.addresses().some((a) => a.includes('/p2p-circuit')), 'circuit address');
  // The relay address comes before LAN (here loopback) ones: a token used from another network
  // reaches the relay first. libp2p's dialer still tries direct addresses before circuits.
  assert.ok(node.addresses()[0]!.includes('/p2p-circuit'));
  assert.ok(node.addresses().some((a) => a.startsWith('/ip4/127.0.0.1/tcp/')));
  await waitFor(
    () =>
      relay.peer(node.endpointId)?.announcement.listenAddrs.some((a) => a.includes('/p2p-circuit')) === true,
    'announced circuit address',
  );
  // A relay itself does not reserve on anything.
  assert.ok(relay.addresses().every((a) => !a.includes('/p2p-circuit')));
});

test('a busy mesh port is a ConfigError', async () => {
  const a = await cluster().node();
  const port = Number(a.addresses()[0]!.split('/')[4]);
  await assert.rejects(cluster().node({ listenPort: port }), ConfigError);
});
