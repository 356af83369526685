import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import OpenAI from 'openai';
import { decodeInviteToken, encodeInviteToken } from '../../src/mesh/invite.ts';
import type { StreamTapEvent } from '../../src/mesh/types.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { startTcpCapture } from '../helpers/tcp-capture.ts';

const PROMPT_MARKER = 'PROMPT-MARKER-7f3a9c1e';
const ANSWER_MARKER = 'ANSWER-MARKER-b52e8d04';

function tapInto(sink: Buffer[]) {
  return (event: StreamTapEvent) => sink.push(Buffer.from(event.bytes));
}

/** A token for `node` whose addresses point at a capture proxy in front of its mesh port. */
function tokenVia(node: MeshNode, proxyPort: number): string {
  const invite = decodeInviteToken(node.mesh.inviteToken());
  const addrs = invite.addrs.map((a) => a.replace(/\/tcp\/\d+/, `/tcp/${proxyPort}`));
  return encodeInviteToken(
    invite.mesh,
    addrs,
    invite.owner === undefined ? undefined : { owner: invite.owner, invite: invite.invite! },
  );
}

function meshPort(node: MeshNode): number {
  const port = /\/ip4\/127\.0\.0\.1\/tcp\/(\d+)/.exec(node.mesh.addresses().join(' '))?.[1];
  assert.ok(port, 'node has a loopback TCP address');
  return Number(port);
}

async function ask(client: MeshNode, model: string) {
  const openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  const { data: stream, response } = await openai.chat.completions
    .create({ model, messages: [{ role: 'user', content: `please repeat ${PROMPT_MARKER}` }], stream: true })
    .withResponse();
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  return { text, path: response.headers.get('x-mesh-path'), e2e: response.headers.get('x-mesh-e2e') };
}

function assertNoMarkers(haystack: Buffer | string, where: string) {
  const text = Buffer.isBuffer(haystack) ? haystack.toString('latin1') : haystack;
  assert.ok(!text.includes(PROMPT_MARKER), `prompt marker visible in ${where}`);
  assert.ok(!text.includes(ANSWER_MARKER), `answer marker visible in ${where}`);
}

describe('middle nodes see only ciphertext', () => {
  const cluster = new TestCluster();
  const closers: (() => Promise<void>)[] = [];
  after(async () => {
    await cluster.stopAll();
    for (const close of closers) await close();
  });

  test('through a relay: no marker on the relay wire, in its streams, or in any log but the host inference path', async () => {
    const fake = await startFakeOpenAi({ reply: ANSWER_MARKER, model: 'private' });
    closers.push(fake.close);
    const relayTap: Buffer[] = [];
    const relay = await cluster.start('relay', { relay: true }, { streamTap: tapInto(relayTap) });
    const wire = await startTcpCapture(meshPort(relay));
    closers.push(wire.close);
    const token = tokenVia(relay, wire.port);
    await cluster.start('host', {
      join: [token],
      reachableOnlyViaRelay: true,
      backend: { url: fake.url, model: 'private' },
    });
    const client = await cluster.start('client', { client: true, join: [token] });
    await waitUntil(() => seesModel(client, 'private'), 'client to learn the relay-only host');

    const answer = await ask(client, 'private');
    assert.equal(answer.path, 'relay');
    assert.equal(answer.e2e, 'encrypted');
    assert.ok(answer.text.includes(ANSWER_MARKER), 'the client itself reads the answer');
    assert.ok(wire.bytes().length > 0, 'the capture saw the relay traffic');
    assertNoMarkers(wire.bytes(), 'the relay TCP traffic');
    assertNoMarkers(Buffer.concat(relayTap), 'the relay app streams');
    for (const [name, lines] of cluster.logs) assertNoMarkers(lines.join(''), `${name} logs`);
  });

  for (const encrypted of [true, false]) {
    test(`through a forwarding node (${encrypted ? 'E2E: no marker' : 'plaintext control: marker visible'})`, async () => {
      const fake = await startFakeOpenAi({ reply: ANSWER_MARKER, model: `fwd-${encrypted}` });
      closers.push(fake.close);
      const middleTap: Buffer[] = [];
      const suffix = encrypted ? 'e2e' : 'plain';
      const middle = await cluster.start(`middle-${suffix}`, {}, { streamTap: tapInto(middleTap) });
      // A host that dials out to the middle node only and cannot be dialled: the client has to
      // ask the middle node to forward, and the middle node sees every byte of the stream.
      await cluster.start(`fwd-host-${suffix}`, {
        join: [middle.mesh.inviteToken()],
        reachableOnlyViaRelay: true,
        backend: { url: fake.url, model: `fwd-${encrypted}` },
        e2e: encrypted,
      });
      const client = await cluster.start(`fwd-client-${suffix}`, {
        client: true,
        join: [middle.mesh.inviteToken()],
      });
      await waitUntil(() => seesModel(client, `fwd-${encrypted}`), 'client to learn the host transitively');

      const answer = await ask(client, `fwd-${encrypted}`);
      assert.equal(answer.path, 'forwarded');
      assert.equal(answer.e2e, encrypted ? 'encrypted' : 'plaintext');
      assert.ok(answer.text.includes(ANSWER_MARKER));
      const seen = Buffer.concat(middleTap).toString('latin1');
      assert.ok(seen.length > 0, 'the middle node carried the stream');
      if (encrypted) {
        assertNoMarkers(seen, 'the forwarding node streams');
        assertNoMarkers((cluster.logs.get(`middle-${suffix}`) ?? []).join(''), 'the forwarding node logs');
      } else {
        // The control proves the capture would see a prompt: without E2E it is right there.
        assert.ok(seen.includes(PROMPT_MARKER) && seen.includes(ANSWER_MARKER));
      }
    });
  }
});

describe('mixed versions: a node without inference keys and a new node', () => {
  const cluster = new TestCluster();
  const closers: (() => Promise<void>)[] = [];
  after(async () => {
    await cluster.stopAll();
    for (const close of closers) await close();
  });

  test('interoperate over plaintext when policy allows, and the new node refuses when it forbids', async () => {
    const fake = await startFakeOpenAi({ tokens: 4, model: 'legacy-model' });
    const fakeNew = await startFakeOpenAi({ tokens: 4, model: 'new-model' });
    closers.push(fake.close, fakeNew.close);
    const legacyHost = await cluster.start('legacy-host', {
      e2e: false,
      backend: { url: fake.url, model: 'legacy-model' },
    });
    const token = legacyHost.mesh.inviteToken();
    await cluster.start('new-host', {
      join: [token],
      backend: { url: fakeNew.url, model: 'new-model' },
    });
    const newClient = await cluster.start('new-client', { client: true, join: [token] });
    const strictClient = await cluster.start('strict-client', {
      client: true,
      join: [token],
      requireEncryption: true,
    });
    const legacyClient = await cluster.start('legacy-client', { client: true, e2e: false, join: [token] });
    await cluster.start('strict-host', {
      join: [token],
      requireEncryption: true,
      backend: { url: fakeNew.url, model: 'strict-model' },
    });
    for (const node of [newClient, strictClient, legacyClient]) {
      await waitUntil(
        () => seesModel(node, 'legacy-model') && seesModel(node, 'new-model'),
        'models to propagate',
      );
    }
    await waitUntil(() => seesModel(legacyClient, 'strict-model'), 'strict host to propagate');

    const post = (node: MeshNode, model: string) =>
      fetch(`${node.apiUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      });

    // new → old: plaintext, because the old host has no key.
    const newToOld = await post(newClient, 'legacy-model');
    assert.equal(newToOld.status, 200);
    assert.equal(newToOld.headers.get('x-mesh-e2e'), 'plaintext');
    // old → new: the old node sends plaintext HTTP, the new host serves it.
    const oldToNew = await post(legacyClient, 'new-model');
    assert.equal(oldToNew.status, 200);
    assert.equal(oldToNew.headers.get('x-mesh-e2e'), 'plaintext');
    // new → new is sealed.
    const newToNew = await post(newClient, 'new-model');
    assert.equal(newToNew.headers.get('x-mesh-e2e'), 'encrypted');

    // Policy forbids plaintext: the sender refuses the old host...
    const refused = await post(strictClient, 'legacy-model');
    assert.equal(refused.status, 503);
    const body = (await refused.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'no_encrypted_host');
    assert.match(body.error.message, /no inference key/);
    assert.equal((await post(strictClient, 'new-model')).headers.get('x-mesh-e2e'), 'encrypted');
    // ...and a strict host refuses a plaintext request from the old node.
    const strictHostRefusal = await post(legacyClient, 'strict-model');
    assert.equal(strictHostRefusal.status, 503);
    assert.equal(
      ((await strictHostRefusal.json()) as { error: { code: string } }).error.code,
      'encryption_required',
    );
    for (const r of [newToOld, oldToNew, newToNew]) await r.arrayBuffer().catch(() => undefined);
  });
});
