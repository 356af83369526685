import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { multiaddr } from '@multiformats/multiaddr';
import { durationFlag, runInvite, runRevoke } from '../../src/cli/commands/membership.ts';
import { decodeInviteToken, encodeInviteToken } from '../../src/mesh/invite.ts';
import { MEMBERSHIP_FILE, OWNER_KEY_FILE } from '../../src/mesh/membership.ts';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { CONSOLE_CREDENTIAL_FILE } from '../../src/node/console-credential.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { Cluster, libp2pOf, waitFor } from '../mesh/helpers.ts';
import { rawRequest } from './helpers.ts';

// Issue #15 finding 10: there was no way to revoke a member. Now the node that creates a mesh
// holds its owner key; invites are owner-signed and may expire; an owner-signed revocation is
// enforced by every node (no connection, no gossip, no routing) and survives restarts.
describe('revocable membership', () => {
  const cluster = new Cluster();
  after(() => cluster.cleanup());

  test('owner, signed invites, admission through a member, revocation enforced everywhere and kept', async () => {
    const ownerDir = await cluster.tempDir();
    // No mesh id given: this node creates a mesh, so it holds the owner key.
    const owner = await cluster.node({ meshId: undefined, dataDir: ownerDir });
    const token = decodeInviteToken(owner.inviteToken());
    assert.equal(token.v, 2);
    assert.match(token.owner!, /^[0-9a-f]{64}$/);

    const bDir = await cluster.tempDir();
    const b = await cluster.node({ meshId: undefined, dataDir: bDir });
    await b.join(owner.inviteToken());
    assert.equal(b.membershipStatus().admitted, true);
    assert.equal(b.membershipStatus().owner, false);
    // A member's token admits too: the member forwards the request to the owner node.
    const cDir = await cluster.tempDir();
    const c = await cluster.node({ meshId: undefined, dataDir: cDir });
    await c.join(b.inviteToken());
    assert.equal(c.membershipStatus().admitted, true);
    await waitFor(() => [owner, b, c].every((n) => n.peers().length === 2), 'all three know each other');
    // Knowing the mesh id is not enough any more: without a certificate, no membership.
    const stray = await cluster.node({ meshId: b.meshId });
    await libp2pOf(stray).dial(multiaddr(b.addresses()[0]!));
    await waitFor(() => stray.peer(b.endpointId) !== undefined, 'stray proves the mesh id and hears b');
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(b.peer(stray.endpointId), undefined, 'b refuses an announcement without a certificate');
    // Invites may expire; an expired one admits nobody.
    const late = decodeInviteToken(owner.inviteToken({ expiresInMs: 1 }));
    await new Promise((r) => setTimeout(r, 20));
    const d = await cluster.node({ meshId: undefined });
    await assert.rejects(
      d.join(encodeInviteToken(late.mesh, late.addrs, { owner: late.owner!, invite: late.invite! })),
      /expired/,
    );
    // Refused, it does not stay connected (it would gossip on, refused, every heartbeat).
    await waitFor(() => libp2pOf(d).getConnections().length === 0, 'the refused joiner hangs up');
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(libp2pOf(d).getConnections().length, 0, 'and does not redial');
    assert.throws(() => b.inviteToken({ expiresInMs: 1000 }), /owner/);
    // The owner key stays in the creator's data dir, readable by its user only.
    assert.equal((await stat(join(ownerDir, OWNER_KEY_FILE))).mode & 0o777, 0o600);

    let served = 0;
    c.handle(PROTOCOL_HTTP, async (stream) => {
      served++;
      await stream.closeWrite();
    });
    await owner.revoke(c.endpointId);
    await waitFor(
      () => b.peer(c.endpointId) === undefined && owner.peer(c.endpointId) === undefined,
      'every node drops the revoked member',
    );
    await waitFor(() => b.connectionsTo(c.endpointId).length === 0, 'no connection to it');
    await assert.rejects(b.openStream(c.endpointId, PROTOCOL_HTTP));
    assert.equal(served, 0);
    // It cannot come back: gossip from it is refused and so is a reconnection.
    await c.join(owner.inviteToken()).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(owner.peer(c.endpointId), undefined);
    assert.equal(b.peer(c.endpointId), undefined);

    // Survives a restart of a member: the revocation is persisted in its data dir.
    await b.stop();
    const b2 = await cluster.node({ meshId: b.meshId, dataDir: bDir });
    await b2.join(owner.inviteToken());
    await waitFor(() => b2.peer(owner.endpointId) !== undefined, 'restarted member rejoins');
    assert.equal(b2.membershipStatus().revoked, 1);
    await c.join(b2.inviteToken()).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(b2.peer(c.endpointId), undefined, 'the restarted member still refuses it');
    assert.match(await readFile(join(bDir, MEMBERSHIP_FILE), 'utf8'), /"revocations"/);
  });

  test('a mesh from before owners keeps its plain tokens', async () => {
    const a = await cluster.node({ meshId: 'legacy-mesh' });
    const b = await cluster.node({ meshId: 'elsewhere' });
    assert.equal(decodeInviteToken(a.inviteToken()).v, 1);
    await b.join(a.inviteToken());
    await waitFor(() => a.peer(b.endpointId) !== undefined && b.peer(a.endpointId) !== undefined, 'joined');
    assert.equal(b.membershipStatus().owned, false);
  });
});

describe('mesh-llm invite / revoke through the console (local credential)', () => {
  const nodes = new TestCluster();
  after(() => nodes.stopAll());

  test('invite --expires and revoke need the credential; a non-owner is told why', async () => {
    const owner = await nodes.start('owner');
    const member = await nodes.start('member', { join: [owner.mesh.inviteToken()] });
    const post = async (node: typeof owner, path: string, body: unknown, credential?: string) => {
      const answer = await rawRequest(node.consoleUrl!, {
        method: 'POST',
        path,
        headers: {
          'content-type': 'application/json',
          ...(credential ? { authorization: `Bearer ${credential}` } : {}),
        },
        body: JSON.stringify(body),
      });
      return { status: answer.status, body: JSON.parse(answer.text) };
    };
    const credentialOf = (node: typeof owner) =>
      readFile(join(node.config.dataDir, CONSOLE_CREDENTIAL_FILE), 'utf8').then((t) => t.trim());
    assert.equal((await post(owner, '/api/invite', { expiresInMs: 60_000 })).status, 401);
    const invited = await post(owner, '/api/invite', { expiresInMs: 60_000 }, await credentialOf(owner));
    assert.equal(invited.status, 200);
    assert.equal(decodeInviteToken(invited.body.token).v, 2);
    const refused = await post(member, '/api/revoke', { peer: owner.endpointId }, await credentialOf(member));
    assert.equal(refused.status, 400);
    assert.match(refused.body.error.message, /owner/);
    const revoked = await post(owner, '/api/revoke', { peer: member.endpointId }, await credentialOf(owner));
    assert.equal(revoked.status, 200);
    await waitFor(() => owner.mesh.peer(member.endpointId) === undefined, 'owner drops the revoked member');
  });

  test('the CLI: mesh-llm invite --expires 1h and revoke PEER talk to the running node', async () => {
    const owner = await nodes.start('cli-owner');
    const member = await nodes.start('cli-member', { join: [owner.mesh.inviteToken()] });
    const port = new URL(owner.consoleUrl!).port;
    const flags = ['--console', port, '--data-dir', owner.config.dataDir];
    const printed: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) => printed.push(String(chunk)) > 0) as typeof write;
    try {
      assert.equal(await runInvite([...flags, '--expires', '1h']), 0);
      assert.equal(await runRevoke([member.endpointId, ...flags]), 0);
    } finally {
      process.stdout.write = write;
    }
    assert.equal(decodeInviteToken(printed[0]!.trim()).v, 2);
    assert.match(printed[1]!, /revoked/);
    await waitFor(() => owner.mesh.peer(member.endpointId) === undefined, 'the member is gone');
    assert.throws(() => durationFlag('soon', '--expires'), /unit/);
    assert.equal(durationFlag('24h', '--expires'), 86_400_000);
  });
});
