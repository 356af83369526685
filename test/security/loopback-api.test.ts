import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { serveConfigFromArgs } from '../../src/cli/commands/serve.ts';
import { ConfigError } from '../../src/errors.ts';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { CONSOLE_CREDENTIAL_FILE } from '../../src/node/console-credential.ts';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { chatBody, hostileHttpHandler, rawRequest } from './helpers.ts';

/**
 * Issue #15 findings 6 and 12, ingress keys and the console credential: what a web page, a
 * remote host or a stray input can make the loopback API and the console do.
 */
describe('the loopback API and console against web pages and hostile hosts', () => {
  const cluster = new TestCluster();
  let fake: FakeOpenAiServer;
  let node: MeshNode;
  let hostile: MeshNode;

  before(async () => {
    fake = await startFakeOpenAi({ tokens: 3, model: 'local-model' });
    node = await cluster.start('api-node', { backend: { url: fake.url, model: 'local-model' } });
    // A member host (no inference key, so plaintext) whose HTTP handler is replaced by one that
    // answers with headers meant for a browser.
    hostile = await cluster.start('hostile-host', {
      e2e: false,
      join: [node.mesh.inviteToken()],
      backend: { url: fake.url, model: 'remote-model' },
    });
    hostile.mesh.handle(
      PROTOCOL_HTTP,
      hostileHttpHandler(async (stream) => {
        const body = '{"id":"x","object":"chat.completion","choices":[]}';
        await stream.write(
          Buffer.from(
            'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n' +
              'access-control-allow-origin: *\r\naccess-control-allow-credentials: true\r\n' +
              `set-cookie: session=stolen; Path=/\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
          ),
        );
        await stream.closeWrite();
      }),
    );
    await waitUntil(() => seesModel(node, 'remote-model'), 'the node to learn the hostile host');
  });
  after(async () => {
    await cluster.stopAll();
    await fake.close();
  });

  test('a DNS-rebinding Host is refused (403) and runs nothing', async () => {
    const before = fake.requests;
    const models = await rawRequest(node.apiUrl, {
      path: '/v1/models',
      headers: { host: 'evil.example:9337' },
    });
    assert.equal(models.status, 403);
    assert.equal(JSON.parse(models.text).error.code, 'forbidden_host');
    const chat = await rawRequest(node.apiUrl, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { host: 'rebind.evil.example', 'content-type': 'application/json' },
      body: chatBody('local-model'),
    });
    assert.equal(chat.status, 403);
    assert.equal(fake.requests, before, 'no inference ran');
    const ok = await rawRequest(node.apiUrl, { path: '/v1/models', headers: { host: 'localhost:9337' } });
    assert.equal(ok.status, 200);
  });

  test('a cross-origin text/plain POST (no preflight) is refused with 415 and runs nothing', async () => {
    const before = fake.requests;
    const answer = await rawRequest(node.apiUrl, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'text/plain', origin: 'https://evil.example' },
      body: chatBody('local-model'),
    });
    assert.equal(answer.status, 415);
    const error = JSON.parse(answer.text).error;
    assert.equal(error.code, 'unsupported_content_type');
    assert.equal(error.type, 'invalid_request_error');
    assert.equal(fake.requests, before);
  });

  test("a remote host's CORS and cookie headers do not reach the client", async () => {
    const answer = await rawRequest(node.apiUrl, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: chatBody('remote-model'),
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['x-mesh-host'], hostile.endpointId);
    assert.equal(answer.headers['access-control-allow-origin'], undefined);
    assert.equal(answer.headers['access-control-allow-credentials'], undefined);
    assert.equal(answer.headers['set-cookie'], undefined);
    assert.equal(answer.headers['content-type'], 'application/json');
  });

  test('a malformed percent-escape in a model path is a 400, not a 500', async () => {
    const answer = await rawRequest(node.apiUrl, { path: '/v1/models/%E0%A4%A' });
    assert.equal(answer.status, 400);
    assert.equal(JSON.parse(answer.text).error.type, 'invalid_request_error');
    const next = await rawRequest(node.apiUrl, { path: '/v1/models' });
    assert.equal(next.status, 200, 'the node keeps serving');
  });

  test("the console refuses writes from any other origin, another local port's page included", async () => {
    const own = new URL(node.consoleUrl!).origin;
    const post = (origin: string) =>
      rawRequest(node.consoleUrl!, {
        method: 'POST',
        path: '/api/trust/reset',
        headers: { 'content-type': 'application/json', origin },
        body: JSON.stringify({ peer: 'x' }),
      });
    for (const foreign of ['http://localhost:3000', 'http://127.0.0.1:1', 'https://evil.example']) {
      const answer = await post(foreign);
      assert.equal(answer.status, 403, foreign);
      assert.equal(JSON.parse(answer.text).error.code, 'forbidden_origin');
    }
    const mine = await post(own);
    assert.equal(mine.status, 401, 'its own page gets as far as the credential check');
  });

  test('the console shows the invite token and accepts writes only with the local credential', async () => {
    const file = join(node.config.dataDir, CONSOLE_CREDENTIAL_FILE);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const credential = (await readFile(file, 'utf8')).trim();
    const anonymous = await rawRequest(node.consoleUrl!, { path: '/api/status' });
    assert.equal(anonymous.status, 200);
    assert.equal(JSON.parse(anonymous.text).node.token, null, 'no token without the credential');
    const owner = await rawRequest(node.consoleUrl!, {
      path: '/api/status',
      headers: { authorization: `Bearer ${credential}` },
    });
    assert.equal(JSON.parse(owner.text).node.token, node.mesh.inviteToken());
    const reset = (authorization?: string) =>
      rawRequest(node.consoleUrl!, {
        method: 'POST',
        path: '/api/trust/reset',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body: JSON.stringify({ peer: hostile.endpointId }),
      });
    const refused = await reset();
    assert.equal(refused.status, 401);
    assert.equal(JSON.parse(refused.text).error.code, 'console_credential_required');
    assert.equal((await reset('Bearer not-the-credential-at-all-xxxxxxxxxxxxxxxxx')).status, 401);
    assert.equal((await reset(`Bearer ${credential}`)).status, 200);
  });
});

describe('/api/status on a node with no dialable address yet', () => {
  const cluster = new TestCluster();
  after(() => cluster.stopAll());

  test('answers 200 with a null token instead of 500', async () => {
    // Reachable only through a relay, and there is none: no address to put in a token.
    const lonely = await cluster.start('lonely', { client: true, reachableOnlyViaRelay: true });
    assert.equal(lonely.mesh.addresses().length, 0);
    const answer = await rawRequest(lonely.consoleUrl!, { path: '/api/status' });
    assert.equal(answer.status, 200);
    assert.equal(JSON.parse(answer.text).node.token, null);
  });
});

describe('ingress API keys', () => {
  const cluster = new TestCluster();
  let fake: FakeOpenAiServer;
  after(async () => {
    await cluster.stopAll();
    await fake?.close();
  });

  test('with keys, every /v1 request needs Authorization: Bearer KEY (401 in OpenAI shape)', async () => {
    fake = await startFakeOpenAi({ tokens: 2, model: 'm' });
    const node = await cluster.start('keyed', {
      backend: { url: fake.url, model: 'm' },
      apiKeys: ['first-key-0123456789', 'second-key-abcdefghij'],
    });
    const post = (authorization?: string) =>
      rawRequest(node.apiUrl, {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body: chatBody('m'),
      });
    const before = fake.requests;
    for (const answer of [
      await post(),
      await post('Bearer wrong-key-0123456789'),
      await post('Basic Zmlyc3Qta2V5LTAxMjM0NTY3ODk='),
      await post('Bearer first-key-012345678'),
      await rawRequest(node.apiUrl, { path: '/v1/models' }),
    ]) {
      assert.equal(answer.status, 401);
      const { error } = JSON.parse(answer.text);
      assert.equal(error.code, 'invalid_api_key');
      assert.equal(error.type, 'invalid_request_error');
      assert.equal(error.param, null);
      assert.ok(!answer.text.includes('first-key'), 'the error never echoes a key');
    }
    assert.equal(fake.requests, before, 'nothing ran without a valid key');
    assert.equal((await post('Bearer first-key-0123456789')).status, 200);
    assert.equal((await post('bearer second-key-abcdefghij')).status, 200);
  });

  test('--listen-all refuses to start without keys unless --insecure-no-auth', async () => {
    await assert.rejects(
      cluster.start('open', { client: true, apiHost: '0.0.0.0' }),
      (error: Error) => error instanceof ConfigError && /--api-key/.test(error.message),
    );
    const open = await cluster.start('open-on-purpose', {
      client: true,
      apiHost: '0.0.0.0',
      insecureNoAuth: true,
    });
    assert.ok(open.apiUrl);
    const keyed = await cluster.start('keyed-all', {
      client: true,
      apiHost: '0.0.0.0',
      apiKeys: ['k-0123456789'],
    });
    // Bound beyond loopback the Host check is off (clients use the machine's name); the key is the gate.
    const answer = await rawRequest(keyed.apiUrl, {
      path: '/v1/models',
      headers: { host: 'my-box.lan:9337', authorization: 'Bearer k-0123456789' },
    });
    assert.equal(answer.status, 200);
  });

  test('--api-keys-file reads one key a line; bad keys are a readable error', async () => {
    const dir = await cluster.root();
    const file = join(dir, 'keys.txt');
    await writeFile(file, '# team keys\nalpha-key-000000\n\n  beta-key-1111111  \n');
    const config = serveConfigFromArgs([
      '--api-keys-file',
      file,
      '--api-key',
      'gamma-key-2222222',
      '--client',
    ])!;
    assert.deepEqual(config.apiKeys.sort(), ['alpha-key-000000', 'beta-key-1111111', 'gamma-key-2222222']);
    assert.throws(() => serveConfigFromArgs(['--api-key', 'short']), /8 to 1024 visible ASCII/);
    await writeFile(file, '# nothing\n');
    assert.throws(() => serveConfigFromArgs(['--api-keys-file', file]), /holds no key/);
  });
});
