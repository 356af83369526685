import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../src/errors.ts';
import {
  endpointIdFromPeerId,
  IDENTITY_FILE,
  loadOrCreateIdentity,
  peerIdFromEndpointId,
} from '../../src/mesh/identity.ts';
import { decodeInviteToken, encodeInviteToken } from '../../src/mesh/invite.ts';
import { AnnouncementSequence } from '../../src/mesh/sequence.ts';
import { Cluster } from './helpers.ts';

const PEER = '12D3KooWGRUVh8wfKqDNyVqLbuLnPxrwsG6ga5e7kxG9ivRDKjYn';
const ADDR = `/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`;

test('invite token round trip', () => {
  const token = encodeInviteToken('my-mesh', [ADDR, `/ip4/10.0.0.2/tcp/9/p2p/${PEER}`]);
  assert.match(token, /^[A-Za-z0-9_-]+$/);
  const decoded = decodeInviteToken(`  ${token}\n`);
  assert.deepEqual(decoded, { v: 1, mesh: 'my-mesh', addrs: [ADDR, `/ip4/10.0.0.2/tcp/9/p2p/${PEER}`] });
});

test('garbage invite tokens give readable ConfigErrors', () => {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['not a token!', /not valid/],
    [Buffer.from('hello world').toString('base64url'), /does not decode/],
    [b64({ v: 3, mesh: 'm', addrs: [ADDR] }), /version 3 is not supported/],
    [b64({ v: 2, mesh: 'm', addrs: [ADDR] }), /no valid mesh owner key/],
    [b64({ v: 1, mesh: 'bad mesh!', addrs: [ADDR] }), /mesh id/],
    [b64({ v: 1, mesh: 'm', addrs: [] }), /no addresses/],
    [b64({ v: 1, mesh: 'm', addrs: ['/ip4/1.2.3.4/tcp/1'] }), /without a \/p2p\/ peer id/],
    [b64({ v: 1, mesh: 'm', addrs: ['garbage'] }), /not a multiaddr/],
    [b64({ v: 1, mesh: 'm', addrs: [42] }), /non-text address/],
    [b64([1, 2]), /version/],
    ['A'.repeat(20_000), /too long/],
  ];
  for (const [token, message] of cases) {
    assert.throws(
      () => decodeInviteToken(token),
      (err: unknown) =>
        err instanceof ConfigError && message.test(err.message) && !err.message.includes(token || '\u0000'),
      `token case ${message}`,
    );
  }
});

test('join() rejects a garbage token with a ConfigError', async () => {
  const cluster = new Cluster();
  try {
    const node = await cluster.node();
    await assert.rejects(node.join('definitely-not-a-token'), ConfigError);
    const token = node.inviteToken();
    assert.deepEqual(decodeInviteToken(token).addrs, node.addresses());
    assert.equal(decodeInviteToken(token).mesh, node.meshId);
  } finally {
    await cluster.cleanup();
  }
});

test('identity is created 0600 in the data dir and reloaded unchanged', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-id-'));
  try {
    const first = await loadOrCreateIdentity(dir);
    const file = join(dir, IDENTITY_FILE);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.match(first.endpointId, /^[0-9a-f]{64}$/);
    assert.equal(first.endpointId, Buffer.from(first.privateKey.publicKey.raw).toString('hex'));
    const again = await loadOrCreateIdentity(dir);
    assert.equal(again.endpointId, first.endpointId);
    assert.equal(peerIdFromEndpointId(first.endpointId).toString(), first.peerId.toString());
    assert.equal(endpointIdFromPeerId(first.peerId.toString()), first.endpointId);
    await writeFile(file, Buffer.from('corrupt'));
    await assert.rejects(loadOrCreateIdentity(dir), ConfigError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('announcement sequence rises across restarts even if the clock steps back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-seq-'));
  try {
    let now = 2_000_000;
    const first = new AnnouncementSequence({ dataDir: dir, clock: () => now });
    await first.load();
    const a = first.next();
    const b = first.next();
    assert.ok(b > a);
    assert.equal(a, 2_000_000_000n);
    await first.persist();
    now = 1_000; // clock stepped back
    const second = new AnnouncementSequence({ dataDir: dir, clock: () => now });
    await second.load();
    assert.ok(second.next() > b);
    assert.match(await readFile(join(dir, 'announcement-seq'), 'utf8'), /^\d+\n$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
