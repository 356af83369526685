import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chatHistoryOf } from '../../src/backends/llama/chat-history.ts';
import { InvalidRequestError } from '../../src/errors.ts';
import { validateChatCompletion } from '../../src/openai/request.ts';

const messagesOf = (messages: unknown[]) => validateChatCompletion({ model: 'm', messages }).messages;
const call = (id: string, name: string, args: string) => ({
  id,
  type: 'function',
  function: { name, arguments: args },
});

describe('chat messages → chat history', () => {
  it('renders tool calls with their results and continues the model turn after them', () => {
    const history = chatHistoryOf(
      messagesOf([
        { role: 'developer', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'weather?' }] },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [call('a', 'w', '{"c":"P"}'), call('b', 't', '{}')],
        },
        { role: 'tool', tool_call_id: 'b', content: 'noon' },
        { role: 'tool', tool_call_id: 'a', content: [{ type: 'text', text: 'sunny' }] },
      ]),
    );
    assert.deepEqual(history, [
      { type: 'system', text: 'be brief' },
      { type: 'user', text: 'weather?' },
      {
        type: 'model',
        response: [
          'Checking.',
          { type: 'functionCall', name: 'w', params: { c: 'P' }, result: 'sunny', startsNewChunk: true },
          { type: 'functionCall', name: 't', params: {}, result: 'noon', startsNewChunk: false },
        ],
      },
    ]);
  });

  it('opens a new model turn after a user message', () => {
    const history = chatHistoryOf(messagesOf([{ role: 'user', content: 'hi' }]));
    assert.deepEqual(history.at(-1), { type: 'model', response: [] });
  });

  it('refuses unanswered calls, unknown call ids and arguments that are not JSON, by field', () => {
    const cases: Array<[unknown[], string]> = [
      [
        [
          { role: 'assistant', tool_calls: [call('a', 'w', '{}')] },
          { role: 'user', content: 'x' },
        ],
        'messages[0].tool_calls',
      ],
      [[{ role: 'assistant', tool_calls: [call('a', 'w', '{}')] }], 'messages[0].tool_calls'],
      [
        [
          { role: 'user', content: 'x' },
          { role: 'tool', tool_call_id: 'zz', content: 'r' },
        ],
        'messages[1].tool_call_id',
      ],
      [
        [{ role: 'assistant', tool_calls: [call('a', 'w', '{nope')] }],
        'messages[0].tool_calls[0].function.arguments',
      ],
      [[{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }], 'messages[0].content[0]'],
    ];
    for (const [messages, param] of cases) {
      assert.throws(
        () => chatHistoryOf(messagesOf(messages)),
        (e: unknown) => e instanceof InvalidRequestError && e.param === param,
        param,
      );
    }
  });
});
