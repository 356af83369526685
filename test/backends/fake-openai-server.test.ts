import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import OpenAI from 'openai';
import { startFakeOpenAi } from '../helpers/fake-openai-server.ts';
import { type Obj, parseSse } from './sse-util.ts';

describe('fake OpenAI server (test double)', () => {
  it('speaks the protocol the official client expects', async () => {
    const fake = await startFakeOpenAi({ tokens: 5 });
    try {
      const client = new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const models = await client.models.list();
      assert.equal(models.data[0]!.id, 'fake-model');

      const completion = await client.chat.completions.create({
        model: 'fake-model',
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(completion.usage?.completion_tokens, 5);
      assert.equal(completion.choices[0]!.message.content, 'tok0 tok1 tok2 tok3 tok4');

      const stream = await client.chat.completions.create({
        model: 'fake-model',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: 3,
      });
      let text = '';
      let usage: unknown;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (chunk.usage) usage = chunk.usage;
      }
      assert.equal(text, 'tok0 tok1 tok2');
      assert.equal((usage as { completion_tokens: number }).completion_tokens, 3);

      const embeddings = await client.embeddings.create({ model: 'fake-model', input: ['a', 'b'] });
      assert.equal(embeddings.data.length, 2);
      assert.notDeepEqual(embeddings.data[0]!.embedding, embeddings.data[1]!.embedding);

      const text2 = await client.completions.create({ model: 'fake-model', prompt: 'x', max_tokens: 2 });
      assert.equal(text2.choices[0]!.text, 'tok0 tok1');
      assert.equal(fake.requests, 4);
    } finally {
      await fake.close();
    }
  });

  it('answers with a fixed reply, paced by tokenDelayMs, and reports bodies', async () => {
    const bodies: unknown[] = [];
    const fake = await startFakeOpenAi({
      reply: 'MARK a b',
      tokenDelayMs: 10,
      onRequest: (b) => bodies.push(b),
    });
    try {
      const res = await fetch(`${fake.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'q' }] }),
      });
      const { events, done } = parseSse(await res.text());
      assert.equal(done, true);
      assert.equal(events.map((e) => e.choices[0].delta.content ?? '').join(''), 'MARK a b');
      assert.equal(events[0]!.model, 'm');
      assert.deepEqual(bodies, [{ model: 'm', stream: true, messages: [{ role: 'user', content: 'q' }] }]);
    } finally {
      await fake.close();
    }
  });

  it('paces tokens: the first arrive long before the last is due', async () => {
    const fake = await startFakeOpenAi({ tokens: 10_000, tokenDelayMs: 20 });
    try {
      const res = await fetch(`${fake.url}/v1/completions`, {
        method: 'POST',
        body: JSON.stringify({ prompt: 'x', stream: true }),
      });
      let text = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) {
        text += decoder.decode(chunk, { stream: true });
        if (text.split('\n\n').length > 3) break;
      }
      const { events, done } = parseSse(text.slice(0, text.lastIndexOf('\n\n') + 2));
      assert.equal(done, false);
      assert.equal(events[0]!.choices[0].text, 'tok0');
    } finally {
      await fake.close();
    }
  });

  it('answers bad requests with OpenAI errors and closes with streams open', async () => {
    const fake = await startFakeOpenAi({ tokens: 1000, tokenDelayMs: 50 });
    const bad = await fetch(`${fake.url}/v1/chat/completions`, { method: 'POST', body: '{' });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as Obj).error.code, 'invalid_json');
    const missing = await fetch(`${fake.url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    assert.equal(((await missing.json()) as Obj).error.code, 'missing_messages');
    const open = await fetch(`${fake.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ stream: true, messages: [{ role: 'user', content: 'q' }] }),
    });
    const reader = open.body!.getReader();
    await reader.read();
    // close() must not wait for the 1000-token stream (50 s) to finish.
    await fake.close();
    let complete = false;
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        if (new TextDecoder().decode(value).includes('[DONE]')) complete = true;
      }
    } catch {
      // a reset connection is the expected way for the open stream to end
    }
    assert.equal(complete, false);
    await assert.rejects(fetch(`${fake.url}/v1/models`));
  });
});
