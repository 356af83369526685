import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidRequestError } from '../../src/errors.ts';
import {
  parseJsonBody,
  validateChatCompletion,
  validateCompletion,
  validateEmbeddings,
  validateResponses,
} from '../../src/openai/request.ts';

const SECRET = 'TOP-SECRET-PROMPT-TEXT';

/** Asserts a typed 400 naming `param`, whose message never quotes the prompt. */
function rejects(fn: () => unknown, param: string) {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(
    caught instanceof InvalidRequestError,
    `expected InvalidRequestError for ${param}, got ${caught}`,
  );
  assert.equal(caught.kind, 'invalid_request');
  assert.equal(caught.param, param);
  if (param !== 'body')
    assert.ok(caught.message.includes(`'${param}'`), `message names ${param}: ${caught.message}`);
  assert.ok(!caught.message.includes(SECRET), 'message must not echo content');
}

const chat = (over: Record<string, unknown> = {}) => ({
  model: 'm',
  messages: [{ role: 'user', content: SECRET }],
  ...over,
});

describe('parseJsonBody', () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  it('parses an object', () => {
    assert.deepEqual(parseJsonBody(enc('{"a":1}')), { a: 1 });
  });
  it('rejects malformed JSON without quoting it', () => {
    rejects(() => parseJsonBody(enc(`{"messages":"${SECRET}"`)), 'body');
  });
  it('rejects empty, non-object, array, null, and invalid UTF-8', () => {
    rejects(() => parseJsonBody(new Uint8Array()), 'body');
    rejects(() => parseJsonBody(enc('[1,2]')), 'body');
    rejects(() => parseJsonBody(enc('null')), 'body');
    rejects(() => parseJsonBody(enc('"x"')), 'body');
    rejects(() => parseJsonBody(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), 'body');
  });
});

describe('validateChatCompletion', () => {
  it('accepts a valid request and keeps unknown fields', () => {
    const body = chat({
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 16,
      temperature: 0.5,
      top_p: 1,
      stop: ['\n'],
      cache_prompt: true,
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'hi' }] },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 'c', content: '42' },
      ],
    });
    const out = validateChatCompletion(body);
    assert.equal(out.model, 'm');
    assert.equal(out.messages.length, 4);
    assert.equal(out.cache_prompt, true);
  });
  it('names each bad field', () => {
    rejects(() => validateChatCompletion([]), 'body');
    rejects(() => validateChatCompletion({ messages: chat().messages }), 'model');
    rejects(() => validateChatCompletion(chat({ model: '' })), 'model');
    rejects(() => validateChatCompletion(chat({ model: 7 })), 'model');
    rejects(() => validateChatCompletion({ model: 'm' }), 'messages');
    rejects(() => validateChatCompletion(chat({ messages: [] })), 'messages');
    rejects(() => validateChatCompletion(chat({ messages: SECRET })), 'messages');
    rejects(() => validateChatCompletion(chat({ messages: [SECRET] })), 'messages[0]');
    rejects(() => validateChatCompletion(chat({ messages: [{ content: SECRET }] })), 'messages[0].role');
    rejects(
      () => validateChatCompletion(chat({ messages: [{ role: SECRET, content: 'x' }] })),
      'messages[0].role',
    );
    rejects(() => validateChatCompletion(chat({ messages: [{ role: 'user' }] })), 'messages[0].content');
    rejects(
      () => validateChatCompletion(chat({ messages: [{ role: 'user', content: 5 }] })),
      'messages[0].content',
    );
    rejects(
      () => validateChatCompletion(chat({ messages: [{ role: 'user', content: [] }] })),
      'messages[0].content',
    );
    rejects(
      () =>
        validateChatCompletion(chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 1 }] }] })),
      'messages[0].content[0].text',
    );
    rejects(
      () => validateChatCompletion(chat({ messages: [{ role: 'user', content: [{ text: SECRET }] }] })),
      'messages[0].content[0].type',
    );
    rejects(
      () => validateChatCompletion(chat({ messages: [{ role: 'tool', content: SECRET }] })),
      'messages[0].tool_call_id',
    );
    rejects(() => validateChatCompletion(chat({ stream: 'yes' })), 'stream');
    rejects(
      () => validateChatCompletion(chat({ stream_options: { include_usage: 1 } })),
      'stream_options.include_usage',
    );
    rejects(() => validateChatCompletion(chat({ max_tokens: 0 })), 'max_tokens');
    rejects(() => validateChatCompletion(chat({ max_tokens: 1.5 })), 'max_tokens');
    rejects(() => validateChatCompletion(chat({ max_tokens: '10' })), 'max_tokens');
    rejects(() => validateChatCompletion(chat({ temperature: 3 })), 'temperature');
    rejects(() => validateChatCompletion(chat({ temperature: Number.NaN })), 'temperature');
    rejects(() => validateChatCompletion(chat({ top_p: -0.1 })), 'top_p');
    rejects(() => validateChatCompletion(chat({ n: 0 })), 'n');
    rejects(() => validateChatCompletion(chat({ stop: [SECRET, 3] })), 'stop[1]');
    rejects(
      () => validateChatCompletion(chat({ response_format: { type: 'yaml' } })),
      'response_format.type',
    );
    rejects(() => validateChatCompletion(chat({ tools: {} })), 'tools');
  });
  it('treats null optional fields as absent', () => {
    const out = validateChatCompletion(chat({ max_tokens: null, temperature: null, stop: null }));
    assert.equal(out.max_tokens, null);
  });
});

describe('validateCompletion', () => {
  it('accepts strings and token arrays', () => {
    for (const prompt of ['x', ['a', 'b'], [1, 2, 3], [[1], [2, 3]]]) {
      assert.deepEqual(validateCompletion({ model: 'm', prompt }).prompt, prompt);
    }
  });
  it('names each bad field', () => {
    rejects(() => validateCompletion({ prompt: 'x' }), 'model');
    rejects(() => validateCompletion({ model: 'm' }), 'prompt');
    rejects(() => validateCompletion({ model: 'm', prompt: [] }), 'prompt');
    rejects(() => validateCompletion({ model: 'm', prompt: 5 }), 'prompt');
    rejects(() => validateCompletion({ model: 'm', prompt: [SECRET, 5] }), 'prompt[1]');
    rejects(() => validateCompletion({ model: 'm', prompt: 'x', max_tokens: -1 }), 'max_tokens');
    rejects(() => validateCompletion({ model: 'm', prompt: 'x', echo: 1 }), 'echo');
    rejects(() => validateCompletion({ model: 'm', prompt: 'x', logprobs: 9 }), 'logprobs');
  });
});

describe('validateEmbeddings', () => {
  it('accepts a valid request', () => {
    assert.equal(validateEmbeddings({ model: 'e', input: ['a', 'b'], encoding_format: 'float' }).model, 'e');
  });
  it('names each bad field', () => {
    rejects(() => validateEmbeddings({ input: 'x' }), 'model');
    rejects(() => validateEmbeddings({ model: 'e' }), 'input');
    rejects(() => validateEmbeddings({ model: 'e', input: {} }), 'input');
    rejects(() => validateEmbeddings({ model: 'e', input: 'x', encoding_format: 'hex' }), 'encoding_format');
    rejects(() => validateEmbeddings({ model: 'e', input: 'x', dimensions: 0 }), 'dimensions');
  });
});

describe('validateResponses', () => {
  it('accepts string input and message items', () => {
    assert.equal(validateResponses({ model: 'm', input: SECRET, stream: true }).input, SECRET);
    const out = validateResponses({
      model: 'm',
      instructions: 'sys',
      max_output_tokens: 5,
      input: [
        { role: 'developer', content: 'd' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'q' }] },
        {
          type: 'message',
          role: 'assistant',
          content: [{ type: 'output_text', text: 'a', annotations: [] }],
        },
      ],
      text: { format: { type: 'json_schema', name: 'x', schema: { type: 'object' } } },
    });
    assert.equal(Array.isArray(out.input) && out.input.length, 3);
  });
  it('names each bad field', () => {
    rejects(() => validateResponses({ input: 'x' }), 'model');
    rejects(() => validateResponses({ model: 'm' }), 'input');
    rejects(() => validateResponses({ model: 'm', input: [] }), 'input');
    rejects(() => validateResponses({ model: 'm', input: 4 }), 'input');
    rejects(() => validateResponses({ model: 'm', input: [{ content: SECRET }] }), 'input[0].role');
    rejects(
      () => validateResponses({ model: 'm', input: [{ role: 'tool', content: SECRET }] }),
      'input[0].role',
    );
    rejects(() => validateResponses({ model: 'm', input: [{ role: 'user' }] }), 'input[0].content');
    rejects(
      () =>
        validateResponses({
          model: 'm',
          input: [{ role: 'user', content: [{ type: 'audio', text: SECRET }] }],
        }),
      'input[0].content[0].type',
    );
    rejects(
      () => validateResponses({ model: 'm', input: [{ role: 'user', content: [{ type: 'input_text' }] }] }),
      'input[0].content[0].text',
    );
    rejects(
      () => validateResponses({ model: 'm', input: [{ type: 'function_call_output', output: SECRET }] }),
      'input[0].call_id',
    );
    rejects(() => validateResponses({ model: 'm', input: 'x', max_output_tokens: 0 }), 'max_output_tokens');
    rejects(() => validateResponses({ model: 'm', input: 'x', instructions: 3 }), 'instructions');
    rejects(() => validateResponses({ model: 'm', input: 'x', stream: 'true' }), 'stream');
    rejects(() => validateResponses({ model: 'm', input: 'x', temperature: -1 }), 'temperature');
    rejects(
      () => validateResponses({ model: 'm', input: 'x', previous_response_id: 'resp_1' }),
      'previous_response_id',
    );
    rejects(
      () => validateResponses({ model: 'm', input: 'x', tools: [{ type: 'function' }] }),
      'tools[0].name',
    );
    rejects(
      () => validateResponses({ model: 'm', input: 'x', tools: [{ type: 'web_search_preview' }] }),
      'tools[0].type',
    );
    rejects(
      () => validateResponses({ model: 'm', input: 'x', text: { format: { type: 'xml' } } }),
      'text.format.type',
    );
  });
});
