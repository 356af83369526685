import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSse, parseSse, type SseEvent, SseParseError } from '../../src/openai/sse.ts';
import { chatSse, chunks, splitAt } from './chat-sse-fixture.ts';

async function events(source: AsyncIterable<Uint8Array>): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for await (const event of parseSse(source)) out.push(event);
  return out;
}

const enc = (s: string) => new TextEncoder().encode(s);

describe('parseSse', () => {
  it('parses fields, comments, multi-line data and all line endings', async () => {
    const text =
      ': hi\nevent: a\ndata: one\ndata:two\nid: 5\n\ndata: x\r\n\r\ndata: y\r\rretry: 10\nunknown\n\n';
    assert.deepEqual(await events(chunks(enc(text))), [
      { event: 'a', data: 'one\ntwo', id: '5' },
      { data: 'x', id: '5' },
      { data: 'y', id: '5' },
    ]);
  });

  it('skips events without data and dispatches an unterminated last event', async () => {
    assert.deepEqual(await events(chunks(enc('event: only\n\ndata: last'))), [{ data: 'last' }]);
  });

  it('gives identical events for every two-way split of a UTF-8 stream (CRLF and LF)', async () => {
    for (const crlf of [false, true]) {
      const bytes = enc(chatSse({ crlf }));
      const whole = await events(chunks(bytes));
      assert.equal(whole.length, 10);
      for (let i = 1; i < bytes.length; i++) {
        assert.deepEqual(await events(chunks(...splitAt(bytes, [i]))), whole, `split at ${i}`);
      }
      assert.deepEqual(
        await events(chunks(...splitAt(bytes, [...bytes.keys()].slice(1)))),
        whole,
        'bytewise',
      );
    }
  });

  it('throws a typed error for an event over the size cap', async () => {
    const big = enc(`data: ${'x'.repeat(1000)}\n\n`);
    await assert.rejects(
      async () => {
        for await (const _ of parseSse(chunks(big), { maxEventChars: 100 })) {
          // consume
        }
      },
      (error) => error instanceof SseParseError && error.code === 'invalid_sse',
    );
    const manyLines = enc('data: 0123456789\n'.repeat(20));
    await assert.rejects(async () => {
      for await (const _ of parseSse(chunks(manyLines), { maxEventChars: 100 })) {
        // consume
      }
    }, SseParseError);
  });

  it('round-trips formatSse', async () => {
    const bytes = formatSse({ event: 'e', data: 'a\nb' });
    assert.equal(Buffer.from(bytes).toString(), 'event: e\ndata: a\ndata: b\n\n');
    assert.deepEqual(await events(chunks(bytes)), [{ event: 'e', data: 'a\nb' }]);
  });
});
