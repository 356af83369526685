/** Random and mutated input: only typed errors or failed events, never an unhandled exception. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { translateChatStreamToResponses } from '../../src/api/responses-translation.ts';
import { InvalidRequestError } from '../../src/errors.ts';
import { parseJsonBody, validateChatCompletion, validateResponses } from '../../src/openai/request.ts';
import { parseSse, SseParseError } from '../../src/openai/sse.ts';
import { mulberry32 } from '../helpers/prng.ts';
import { chatSse, chunks, collect, parseEvents } from './chat-sse-fixture.ts';

function randomBytes(next: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  // Bias toward SSE-significant bytes so the parser's branches get exercised.
  const special = [10, 13, 58, 32, 0x64, 0x61, 0x74, 0xf0, 0x9f, 0xc3, 0x7b, 0x7d];
  for (let i = 0; i < length; i++) {
    out[i] = next() < 0.3 ? special[Math.floor(next() * special.length)]! : Math.floor(next() * 256);
  }
  return out;
}

function randomSplit(next: () => number, bytes: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let start = 0;
  while (start < bytes.length) {
    const size = 1 + Math.floor(next() * 40);
    parts.push(bytes.subarray(start, start + size));
    start += size;
  }
  return parts;
}

function mutate(next: () => number, bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  const flips = 1 + Math.floor(next() * 8);
  for (let i = 0; i < flips; i++) out[Math.floor(next() * out.length)] = Math.floor(next() * 256);
  return out.subarray(0, Math.floor(out.length * (0.5 + next() / 2)) + 1);
}

const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);

async function checkTranslation(parts: Uint8Array[]) {
  const request = validateResponses({ model: 'm', input: 'x', stream: true });
  const text = await collect(translateChatStreamToResponses(chunks(...parts), request));
  const events = parseEvents(text);
  assert.equal(events[0]?.event, 'response.created');
  assert.ok(
    TERMINAL.has(events.at(-1)?.event ?? ''),
    `ends with a terminal event, got ${events.at(-1)?.event}`,
  );
  events.forEach((e, i) => {
    assert.equal(e.data.sequence_number, i);
  });
}

describe('fuzz', () => {
  it('parseSse yields events or throws SseParseError on random bytes', async () => {
    const next = mulberry32(1);
    for (let round = 0; round < 300; round++) {
      const bytes = randomBytes(next, Math.floor(next() * 600));
      try {
        for await (const event of parseSse(chunks(...randomSplit(next, bytes)), { maxEventChars: 256 })) {
          assert.equal(typeof event.data, 'string');
        }
      } catch (error) {
        assert.ok(error instanceof SseParseError, `round ${round}: ${error}`);
      }
    }
  });

  it('translation always ends with a terminal event on random bytes', async () => {
    const next = mulberry32(2);
    for (let round = 0; round < 200; round++) {
      const bytes = randomBytes(next, Math.floor(next() * 600));
      await checkTranslation(randomSplit(next, bytes));
    }
  });

  it('translation always ends with a terminal event on mutated valid streams', async () => {
    const next = mulberry32(3);
    const sample = new TextEncoder().encode(chatSse());
    for (let round = 0; round < 300; round++) {
      await checkTranslation(randomSplit(next, mutate(next, sample)));
    }
  });

  it('validation throws only InvalidRequestError on random bodies', () => {
    const next = mulberry32(4);
    const sample = new TextEncoder().encode(
      JSON.stringify({
        model: 'm',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }] }],
        input: 'y',
      }),
    );
    for (let round = 0; round < 500; round++) {
      const bytes = round % 2 === 0 ? randomBytes(next, Math.floor(next() * 100)) : mutate(next, sample);
      for (const validate of [validateChatCompletion, validateResponses]) {
        try {
          validate(parseJsonBody(bytes));
        } catch (error) {
          assert.ok(error instanceof InvalidRequestError, `round ${round}: ${error}`);
        }
      }
    }
  });
});
