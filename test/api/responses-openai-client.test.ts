/** The official `openai` client against a tiny server that uses the translation layer. */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import {
  chatToResponse,
  RESPONSES_SSE_HEADERS,
  responsesToChat,
  translateChatStreamToResponses,
} from '../../src/api/responses-translation.ts';
import { errorBody } from '../../src/openai/errors.ts';
import { parseJsonBody, validateResponses } from '../../src/openai/request.ts';
import type { ChatCompletionRequest } from '../../src/openai/schemas.ts';
import { chatSse, DELTAS } from './chat-sse-fixture.ts';

const enc = (s: string) => new TextEncoder().encode(s);

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** A fake chat backend: the recorded stream, one event per chunk with a tick between. */
async function* fakeChatStream(options: { fail: boolean }): AsyncGenerator<Uint8Array> {
  const events = chatSse({ terminate: !options.fail }).split('\n\n').filter(Boolean);
  const upto = options.fail ? 4 : events.length;
  for (const event of events.slice(0, upto)) {
    await new Promise((resolve) => setImmediate(resolve));
    yield enc(`${event}\n\n`);
  }
}

describe('openai client against translated /v1/responses', () => {
  let server: Server;
  let client: OpenAI;
  const chatRequests: ChatCompletionRequest[] = [];

  before(async () => {
    server = createServer(async (req, res) => {
      try {
        const request = validateResponses(parseJsonBody(await readBody(req)));
        const chat = responsesToChat(request);
        chatRequests.push(chat);
        if (chat.stream) {
          res.writeHead(200, RESPONSES_SSE_HEADERS);
          const fail = request.metadata?.fail === 'yes';
          for await (const bytes of translateChatStreamToResponses(fakeChatStream({ fail }), request)) {
            res.write(bytes);
          }
          res.end();
          return;
        }
        const completion = {
          id: 'chatcmpl-1',
          object: 'chat.completion',
          created: 1_700_000_000,
          model: 'tiny',
          choices: [
            { index: 0, message: { role: 'assistant', content: DELTAS.join('') }, finish_reason: 'stop' },
          ],
          usage: { prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 },
        };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(chatToResponse(completion, request)));
      } catch (error) {
        const { status, body } = errorBody(error);
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    client = new OpenAI({
      baseURL: `http://127.0.0.1:${port}/v1`,
      apiKey: 'x',
      maxRetries: 0,
      timeout: 10_000,
    });
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('streams deltas and a completed event through responses.create', async () => {
    const stream = await client.responses.create({
      model: 'tiny',
      input: 'hello',
      instructions: 'be brief',
      stream: true,
    });
    const deltas: string[] = [];
    const types: string[] = [];
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') deltas.push(event.delta);
      if (event.type === 'response.completed') completed = event.response;
    }
    assert.deepEqual(deltas, DELTAS);
    assert.equal(types[0], 'response.created');
    assert.equal(completed?.status, 'completed');
    assert.equal(completed?.usage?.output_tokens, DELTAS.length);
    const chat = chatRequests.at(-1);
    assert.deepEqual(
      chat?.messages.map((m) => m.role),
      ['system', 'user'],
    );
    assert.deepEqual(chat?.stream_options, { include_usage: true });
  });

  it('accumulates the final response with responses.stream', async () => {
    const stream = client.responses.stream({ model: 'tiny', input: [{ role: 'user', content: 'hi' }] });
    const snapshots: string[] = [];
    stream.on('response.output_text.delta', (event) => snapshots.push(event.snapshot));
    const final = await stream.finalResponse();
    assert.equal(final.output_text, DELTAS.join(''));
    assert.equal(snapshots.at(-1), DELTAS.join(''));
  });

  it('returns output_text for a non-streamed request', async () => {
    const response = await client.responses.create({ model: 'tiny', input: 'hello', max_output_tokens: 20 });
    assert.equal(response.object, 'response');
    assert.equal(response.status, 'completed');
    assert.equal(response.output_text, DELTAS.join(''));
    assert.equal(response.usage?.total_tokens, 10);
    assert.equal(chatRequests.at(-1)?.max_tokens, 20);
  });

  it('surfaces a truncated upstream as response.failed', async () => {
    const stream = await client.responses.create({
      model: 'tiny',
      input: 'hello',
      stream: true,
      metadata: { fail: 'yes' },
    });
    const types: string[] = [];
    let failed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.failed') failed = event.response;
    }
    assert.ok(!types.includes('response.completed'));
    assert.ok(types.includes('error'));
    assert.equal(failed?.status, 'failed');
    assert.equal(failed?.error?.code, 'server_error');
  });

  it('maps validation errors to a 400 the client raises', async () => {
    await assert.rejects(
      client.responses.create({ model: 'tiny', input: [] as unknown as string }),
      (error) => error instanceof OpenAI.BadRequestError && error.status === 400,
    );
  });
});
