/**
 * The official OpenAI client against both backends, each behind a minimal HTTP adapter: proves
 * the JSON and SSE they produce is what real clients parse.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { writeTinyGguf } from '../../src/backends/gguf/tiny-model.ts';
import { LlamaCppBackend } from '../../src/backends/llama-cpp.ts';
import { OpenAiCompatibleBackend } from '../../src/backends/openai-compatible.ts';
import type { InferenceBackend } from '../../src/backends/types.ts';
import type { UpstreamResponse } from '../../src/http/exchange.ts';
import { silentLogger } from '../../src/log.ts';
import { errorResponse } from '../../src/openai/errors.ts';
import { parseOpenAiRequest } from '../../src/openai/request.ts';
import { type FakeOpenAiServer, startFakeOpenAi } from '../helpers/fake-openai-server.ts';

async function serve(backend: InferenceBackend): Promise<{ server: Server; baseURL: string }> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    try {
      let out: UpstreamResponse;
      try {
        const parsed = parseOpenAiRequest(req.method ?? 'GET', req.url ?? '/', Buffer.concat(chunks));
        out = await backend.handle(parsed, abort.signal);
      } catch (error) {
        out = errorResponse(error);
      }
      res.writeHead(out.status, out.headers);
      for await (const chunk of out.body) res.write(chunk);
      res.end();
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` };
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

describe('official OpenAI client', () => {
  let dir: string;
  let fake: FakeOpenAiServer;
  const backends: InferenceBackend[] = [];
  const servers: Server[] = [];
  const clients: Record<string, OpenAI> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mesh-llm-client-'));
    const modelPath = join(dir, 'tiny.gguf');
    await writeTinyGguf(modelPath);
    fake = await startFakeOpenAi({ tokens: 9 });
    const llama = new LlamaCppBackend({
      modelPath,
      threads: 1,
      contextSize: 256,
      parallel: 1,
      logger: silentLogger(),
    });
    const pass = new OpenAiCompatibleBackend({
      baseUrl: fake.url,
      modelName: 'fake-model',
      logger: silentLogger(),
    });
    for (const [name, backend] of [
      ['llama-cpp', llama],
      ['openai-compatible', pass],
    ] as const) {
      await backend.start();
      backends.push(backend);
      const { server, baseURL } = await serve(backend);
      servers.push(server);
      clients[name] = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
    }
  });

  after(async () => {
    for (const s of servers) await close(s);
    for (const b of backends) await b.stop();
    await fake?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const name of ['llama-cpp', 'openai-compatible']) {
    it(`${name}: chat, streamed chat with usage, completions, embeddings`, async () => {
      const client = clients[name]!;
      const model = name === 'llama-cpp' ? 'tiny' : 'fake-model';
      const messages = [{ role: 'user' as const, content: 'hello' }];

      const chat = await client.chat.completions.create({ model, messages, max_tokens: 9 });
      assert.equal(chat.usage?.completion_tokens, 9);
      assert.equal(typeof chat.choices[0]!.message.content, 'string');

      const stream = await client.chat.completions.create({
        model,
        messages,
        max_tokens: 9,
        stream: true,
        stream_options: { include_usage: true },
      });
      let chunks = 0;
      let usage: OpenAI.CompletionUsage | undefined | null;
      let finish: string | null | undefined;
      for await (const chunk of stream) {
        chunks++;
        finish ??= chunk.choices[0]?.finish_reason;
        usage ??= chunk.usage;
      }
      assert.ok(chunks >= 3);
      assert.equal(finish, 'length');
      assert.equal(usage?.completion_tokens, 9);

      const completion = await client.completions.create({ model, prompt: 'hello', max_tokens: 4 });
      assert.equal(completion.usage?.completion_tokens, 4);

      const embeddings = await client.embeddings.create({ model, input: ['one', 'two'] });
      assert.equal(embeddings.data.length, 2);
      assert.ok(embeddings.data[0]!.embedding.length > 0);

      await assert.rejects(
        client.chat.completions.create({ model, messages: [] }),
        (err: unknown) => err instanceof OpenAI.BadRequestError,
      );
    });
  }
});
