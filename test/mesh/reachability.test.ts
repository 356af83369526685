import assert from 'node:assert/strict';
import { test } from 'node:test';
import { multiaddr } from '@multiformats/multiaddr';
import { ConfigError } from '../../src/errors.ts';
import { announceFilter, parseAnnounce } from '../../src/mesh/address-policy.ts';
import { decodeInviteToken, encodeInviteToken } from '../../src/mesh/invite.ts';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { clusterPerTest, readAll, waitFor } from './helpers.ts';

const cluster = clusterPerTest();
const P = '/p2p/12D3KooWEKz4aDYu7cYcYyCavJQ9jeRJVZjizkcfNaMugUKiYZ56';

test('advertised addresses: public, then relay, then LAN; loopback, link-local and bridges never', () => {
  const filter = announceFilter({ loopbackOnly: false, bridgeIps: new Set(['172.17.0.1']) });
  const input = [
    `/ip4/127.0.0.1/tcp/1${P}`,
    `/ip4/192.168.1.5/tcp/1${P}`,
    `/ip4/172.17.0.1/tcp/1${P}`,
    `/ip4/169.254.3.3/tcp/1${P}`,
    `/ip6/fe80::1/tcp/1${P}`,
    `/ip4/5.6.7.8/tcp/9/p2p/12D3KooWMPTFV1uJ9tQR3Wn2Aet3bg6iZsCnDaHeev7denKacbpd/p2p-circuit${P}`,
    `/ip4/81.2.3.4/tcp/1${P}`,
    `/ip6/2a01:4f8::1/udp/1/quic-v1${P}`,
  ].map((a) => multiaddr(a));
  const out = filter(input).map((ma) => ma.toString().split('/').slice(0, 3).join('/'));
  assert.deepEqual(out, ['/ip4/81.2.3.4', '/ip6/2a01:4f8::1', '/ip4/5.6.7.8', '/ip4/192.168.1.5']);
  // A node bound to loopback advertises loopback (and nothing else is there to advertise).
  const local = announceFilter({ loopbackOnly: true, bridgeIps: new Set() });
  assert.equal(local([multiaddr(`/ip4/127.0.0.1/tcp/1${P}`)]).length, 1);
});

test('--announce takes host:port ([v6]:port, DNS) or a multiaddr; garbage is a ConfigError', () => {
  assert.deepEqual(parseAnnounce('203.0.113.9:4001', true).map(String), [
    '/ip4/203.0.113.9/tcp/4001',
    '/ip4/203.0.113.9/udp/4001/quic-v1',
  ]);
  assert.deepEqual(parseAnnounce('[2001:db8::1]:4001', false).map(String), ['/ip6/2001:db8::1/tcp/4001']);
  assert.deepEqual(parseAnnounce('relay.example.org:4001', false).map(String), [
    '/dns/relay.example.org/tcp/4001',
  ]);
  assert.deepEqual(parseAnnounce('/ip4/8.8.8.8/tcp/1', true).map(String), ['/ip4/8.8.8.8/tcp/1']);
  for (const bad of ['nope', 'host:0', 'host:70000', '/not/a/multiaddr', ':5']) {
    assert.throws(() => parseAnnounce(bad, true), ConfigError, bad);
  }
});

test('an announced address comes first in the token; a LAN-only node says what is missing', async () => {
  const lan = await cluster().node({ listenHost: '0.0.0.0' });
  // This machine has no public interface: the node says how to fix that, and still has a token.
  assert.match(lan.reachabilityProblem() ?? '', /--announce HOST:PORT/);
  assert.ok(decodeInviteToken(lan.inviteToken()).addrs.length > 0);
  assert.ok(
    lan.addresses().every((a) => !a.startsWith('/ip4/127.')),
    'no loopback from a 0.0.0.0 node',
  );

  const announced = await cluster().node({ listenHost: '0.0.0.0', announce: ['relay.example.org:4001'] });
  const addrs = decodeInviteToken(announced.inviteToken()).addrs;
  assert.match(addrs[0]!, /^\/dns\/relay\.example\.org\/tcp\/4001\/p2p\//);
  assert.equal(announced.reachabilityProblem(), undefined);
});

test('the mesh port is kept in the data dir; QUIC listens on the same port number over UDP', async () => {
  const dataDir = await cluster().tempDir();
  const first = await cluster().node({ dataDir, quic: true });
  const port = (addrs: string[], proto: 'tcp' | 'udp') =>
    addrs.map((a) => a.split('/')).find((p) => p[3] === proto)?.[4];
  const tcpPort = port(first.addresses(), 'tcp');
  assert.ok(tcpPort !== undefined);
  assert.equal(port(first.addresses(), 'udp'), tcpPort, 'QUIC on the TCP port number');
  await first.stop();
  const again = await cluster().node({ dataDir, quic: true });
  assert.equal(port(again.addresses(), 'tcp'), tcpPort, 'same port after a restart');
});

test('two QUIC nodes talk over QUIC when that is the address they have', async () => {
  const host = await cluster().node({ quic: true });
  host.handle(PROTOCOL_HTTP, async (stream) => {
    const body = await readAll(stream.source);
    await stream.write(body);
    await stream.closeWrite();
  });
  const client = await cluster().node({ quic: true });
  const quicOnly = host.addresses().filter((a) => a.includes('/quic-v1'));
  await client.join(encodeInviteToken(host.meshId, quicOnly));
  await waitFor(() => client.peer(host.endpointId) !== undefined, 'client knows host');
  assert.match(client.link(host.endpointId).address ?? '', /\/udp\/\d+\/quic-v1/);
  assert.equal(client.link(host.endpointId).kind, 'direct');
  const stream = await client.openStream(host.endpointId, PROTOCOL_HTTP);
  await stream.write(Buffer.from('over quic'));
  await stream.closeWrite();
  assert.equal((await readAll(stream.source)).toString(), 'over quic');
});

test('the link says direct, relayed (via which relay) or transitive', async () => {
  const relay = await cluster().node({ relay: true });
  const host = await cluster().node({ reachableOnlyViaRelay: true });
  host.handle(PROTOCOL_HTTP, async (stream) => {
    await readAll(stream.source);
    await stream.closeWrite();
  });
  await host.join(relay.inviteToken());
  await waitFor(() => host.addresses().some((a) => a.includes('/p2p-circuit')), 'relay reservation');
  const client = await cluster().node();
  await client.join(relay.inviteToken());
  await waitFor(() => client.peer(host.endpointId) !== undefined, 'client learns the host');
  assert.equal(client.link(relay.endpointId).kind, 'direct');
  assert.deepEqual(client.link(host.endpointId), { kind: 'transitive', address: null, via: null });
  const stream = await client.openStream(host.endpointId, PROTOCOL_HTTP);
  await stream.closeWrite();
  await readAll(stream.source);
  const link = client.link(host.endpointId);
  assert.equal(link.kind, 'relayed');
  assert.equal(link.via, relay.endpointId);
  assert.match(link.address ?? '', /\/p2p-circuit/);
});
