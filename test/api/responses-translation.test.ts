import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chatToResponse,
  responsesToChat,
  translateChatStreamToResponses,
} from '../../src/api/responses-translation.ts';
import { UpstreamError } from '../../src/errors.ts';
import { validateResponses } from '../../src/openai/request.ts';
import {
  chatSse,
  chunks,
  collect,
  DELTAS,
  deterministicContext,
  parseEvents,
  splitAt,
} from './chat-sse-fixture.ts';

const enc = (s: string) => new TextEncoder().encode(s);

describe('responsesToChat', () => {
  it('maps string input, instructions, limits and streaming', () => {
    const chat = responsesToChat(
      validateResponses({
        model: 'tiny',
        input: 'hello',
        instructions: 'be brief',
        max_output_tokens: 12,
        temperature: 0.3,
        top_p: 0.9,
        stream: true,
        user: 'u1',
      }),
    );
    assert.deepEqual(chat, {
      model: 'tiny',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello' },
      ],
      max_tokens: 12,
      temperature: 0.3,
      top_p: 0.9,
      user: 'u1',
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('maps message items and content parts', () => {
    const chat = responsesToChat(
      validateResponses({
        model: 'tiny',
        input: [
          { role: 'developer', content: 'rules' },
          {
            type: 'message',
            role: 'user',
            content: [
              { type: 'input_text', text: 'a' },
              { type: 'input_text', text: 'b' },
            ],
          },
          { role: 'assistant', content: [{ type: 'output_text', text: 'c', annotations: [] }] },
          {
            role: 'user',
            content: [
              { type: 'input_text', text: 'look' },
              { type: 'input_image', image_url: 'data:image/png;base64,AAAA', detail: 'low' },
            ],
          },
        ],
        text: { format: { type: 'json_schema', name: 'out', schema: { type: 'object' }, strict: true } },
      }),
    );
    assert.deepEqual(chat.messages, [
      { role: 'system', content: 'rules' },
      { role: 'user', content: 'a\nb' },
      { role: 'assistant', content: 'c' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'look' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'low' } },
        ],
      },
    ]);
    assert.deepEqual(chat.response_format, {
      type: 'json_schema',
      json_schema: { name: 'out', schema: { type: 'object' }, strict: true },
    });
    assert.equal(chat.stream, undefined);
    assert.equal(chat.stream_options, undefined);
  });
});

describe('chatToResponse', () => {
  const request = validateResponses({ model: 'tiny', input: 'hi', max_output_tokens: 3 });
  const completion = (finish: string, content: string | null = 'Hi there') => ({
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'gguf-path',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish }],
    usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
  });

  it('builds a completed response', () => {
    const response = chatToResponse(completion('stop'), request, deterministicContext());
    assert.equal(response.id, 'resp_1');
    assert.equal(response.object, 'response');
    assert.equal(response.status, 'completed');
    assert.equal(response.created_at, 1_700_000_000);
    assert.equal(response.completed_at, 1_700_000_123);
    assert.equal(response.model, 'tiny');
    assert.equal(response.max_output_tokens, 3);
    assert.equal(response.incomplete_details, null);
    assert.deepEqual(response.output, [
      {
        type: 'message',
        id: 'msg_2',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: 'Hi there', annotations: [] }],
      },
    ]);
    assert.deepEqual(response.usage, {
      input_tokens: 5,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 3,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 8,
    });
  });

  it('marks a length stop incomplete', () => {
    const response = chatToResponse(completion('length'), request, deterministicContext());
    assert.equal(response.status, 'incomplete');
    assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(response.output[0]?.status, 'incomplete');
  });

  it('rejects a body that is not a chat completion with a typed error', () => {
    for (const bad of [null, 'x', {}, { choices: [] }, { choices: [{ message: 'x' }] }]) {
      assert.throws(() => chatToResponse(bad, request), UpstreamError);
    }
  });
});

describe('translateChatStreamToResponses', () => {
  const request = validateResponses({ model: 'tiny', input: 'hi', stream: true });

  async function translate(parts: Uint8Array[]) {
    return collect(translateChatStreamToResponses(chunks(...parts), request, deterministicContext()));
  }

  it('emits the full Responses event sequence', async () => {
    const events = parseEvents(await translate([enc(chatSse())]));
    assert.deepEqual(
      events.map((e) => e.event),
      [
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
        ...DELTAS.map(() => 'response.output_text.delta'),
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.completed',
      ],
    );
    events.forEach((e, i) => {
      assert.equal(e.data.type, e.event);
      assert.equal(e.data.sequence_number, i);
    });
    const deltas = events.filter((e) => e.event === 'response.output_text.delta');
    assert.deepEqual(
      deltas.map((e) => e.data.delta),
      DELTAS,
    );
    assert.ok(deltas.every((e) => e.data.item_id === 'msg_2' && e.data.output_index === 0));
    const done = events.find((e) => e.event === 'response.output_text.done');
    assert.equal(done?.data.text, DELTAS.join(''));
    const completed = events.at(-1)?.data.response as Record<string, unknown>;
    assert.equal(completed.status, 'completed');
    assert.deepEqual(completed.usage, {
      input_tokens: 7,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: DELTAS.length,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 7 + DELTAS.length,
    });
    const output = completed.output as Array<{ content: Array<{ text: string }> }>;
    assert.equal(output[0]?.content[0]?.text, DELTAS.join(''));
    const created = events[0]?.data.response as Record<string, unknown>;
    assert.equal(created.status, 'in_progress');
    assert.deepEqual(created.output, []);
  });

  it('gives identical output for every byte split, CRLF included', async () => {
    for (const crlf of [false, true]) {
      const bytes = enc(chatSse({ crlf }));
      const whole = await translate([bytes]);
      for (let i = 1; i < bytes.length; i++) {
        assert.equal(await translate(splitAt(bytes, [i])), whole, `split at ${i}`);
      }
      assert.equal(await translate(splitAt(bytes, [...bytes.keys()].slice(1))), whole, 'byte by byte');
    }
  });

  it('emits each delta before the upstream stream continues (no buffering)', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const full = chatSse();
    const cut = full.indexOf('wörld');
    async function* upstream() {
      yield enc(full.slice(0, cut));
      await gate;
      yield enc(full.slice(cut));
    }
    const it = translateChatStreamToResponses(upstream(), request, deterministicContext());
    const seen: string[] = [];
    // Before the gate opens, the first two deltas must already be out.
    while (seen.filter((e) => e === 'response.output_text.delta').length < 2) {
      const next = await it.next();
      assert.equal(next.done, false);
      seen.push(parseEvents(Buffer.from(next.value as Uint8Array).toString())[0]?.event ?? '');
    }
    release();
    const rest = parseEvents(await collect(it));
    assert.equal(rest.at(-1)?.event, 'response.completed');
  });

  it('reports finish_reason length as response.incomplete', async () => {
    const events = parseEvents(await translate([enc(chatSse({ finish: 'length' }))]));
    const last = events.at(-1);
    assert.equal(last?.event, 'response.incomplete');
    assert.deepEqual((last!.data.response as Record<string, unknown>).incomplete_details, {
      reason: 'max_output_tokens',
    });
  });

  it('opens and closes an empty message when no text arrives', async () => {
    const events = parseEvents(await translate([enc(chatSse({ deltas: [] }))]));
    assert.deepEqual(
      events.map((e) => e.event),
      [
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.completed',
      ],
    );
  });

  function assertFailed(events: ReturnType<typeof parseEvents>, code: string) {
    const names = events.map((e) => e.event);
    assert.ok(!names.includes('response.completed'));
    assert.deepEqual(names.slice(-2), ['error', 'response.failed']);
    assert.equal(events.at(-2)?.data.code, code);
    const response = events.at(-1)?.data.response as Record<string, unknown>;
    assert.equal(response.status, 'failed');
    assert.equal((response.error as Record<string, unknown>).code, code);
  }

  it('fails on a truncated stream, keeping the partial text', async () => {
    const events = parseEvents(await translate([enc(chatSse({ terminate: false }))]));
    assertFailed(events, 'server_error');
    const response = events.at(-1)?.data.response as { output: Array<{ content: Array<{ text: string }> }> };
    assert.equal(response.output[0]?.content[0]?.text, DELTAS.join(''));
    // Truncated mid-event, too.
    const full = chatSse();
    assertFailed(
      parseEvents(await translate([enc(full.slice(0, full.indexOf('wörld') + 3))])),
      'server_error',
    );
  });

  it('fails on an upstream error event', async () => {
    const body = `${chatSse({ terminate: false }).split('\n\n').slice(0, 3).join('\n\n')}\n\ndata: ${JSON.stringify(
      {
        error: { message: 'context exceeded', type: 'server_error', code: 'context_length_exceeded' },
      },
    )}\n\n`;
    const events = parseEvents(await translate([enc(body)]));
    assertFailed(events, 'context_length_exceeded');
    assert.equal(events.at(-2)?.data.message, 'context exceeded');
    const named = `event: error\ndata: ${JSON.stringify({ message: 'boom' })}\n\n`;
    assertFailed(parseEvents(await translate([enc(named)])), 'server_error');
  });

  it('fails when the upstream iterable throws, without leaking the message of unknown errors', async () => {
    async function* throwing(): AsyncGenerator<Uint8Array> {
      yield enc(chatSse().slice(0, 200));
      throw new Error('secret prompt text');
    }
    const events = parseEvents(await collect(translateChatStreamToResponses(throwing(), request)));
    assertFailed(events, 'server_error');
    assert.ok(!JSON.stringify(events).includes('secret prompt text'));
    async function* meshFailure(): AsyncGenerator<Uint8Array> {
      yield enc('');
      throw new UpstreamError('decrypt failed', 'decrypt_failed');
    }
    assertFailed(
      parseEvents(await collect(translateChatStreamToResponses(meshFailure(), request))),
      'decrypt_failed',
    );
  });

  it('reads past [DONE] to the end and ignores a transport error after it', async () => {
    let drained = false;
    async function* upstream(): AsyncGenerator<Uint8Array> {
      yield enc(chatSse());
      yield enc('data: {"choices":[{"delta":{"content":"late"}}]}\n\n');
      drained = true;
      throw new UpstreamError('frame missing', 'bad_frame');
    }
    const events = parseEvents(await collect(translateChatStreamToResponses(upstream(), request)));
    assert.equal(drained, true);
    assert.equal(events.at(-1)?.event, 'response.completed');
    assert.ok(!JSON.stringify(events).includes('late'));
  });

  it('fails on malformed JSON data', async () => {
    assertFailed(parseEvents(await translate([enc('data: {not json\n\n')])), 'server_error');
  });

  it('closes the upstream when the consumer stops early', async () => {
    let closed = false;
    async function* upstream(): AsyncGenerator<Uint8Array> {
      try {
        for (let i = 0; i < 1000; i++)
          yield enc(`data: ${JSON.stringify({ choices: [{ delta: { content: 'x' } }] })}\n\n`);
      } finally {
        closed = true;
      }
    }
    let count = 0;
    for await (const _ of translateChatStreamToResponses(upstream(), request)) {
      if (++count === 6) break;
    }
    assert.equal(closed, true);
  });
});

describe('function tools on /v1/responses', () => {
  const tool = {
    type: 'function',
    name: 'get_weather',
    parameters: { type: 'object', properties: {} },
    strict: true,
  };

  it('maps tools, tool_choice and function_call / function_call_output items to chat', () => {
    const chat = responsesToChat(
      validateResponses({
        model: 'tiny',
        tools: [tool],
        tool_choice: { type: 'function', name: 'get_weather' },
        parallel_tool_calls: false,
        input: [
          { role: 'user', content: 'weather?' },
          { type: 'function_call', call_id: 'c1', name: 'get_weather', arguments: '{"city":"Paris"}' },
          { type: 'function_call', call_id: 'c2', name: 'get_weather', arguments: '{"city":"Rome"}' },
          { type: 'function_call_output', call_id: 'c1', output: 'sunny' },
          { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: 'rain' }] },
        ],
      }),
    );
    assert.deepEqual(chat, {
      model: 'tiny',
      messages: [
        { role: 'user', content: 'weather?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'c2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
        { role: 'tool', tool_call_id: 'c2', content: 'rain' },
      ],
      tools: [
        {
          type: 'function',
          function: { name: 'get_weather', parameters: { type: 'object', properties: {} }, strict: true },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
    });
  });

  it('turns tool_calls in a chat answer into function_call items', () => {
    const request = validateResponses({ model: 'tiny', input: 'x', tools: [tool] });
    const response = chatToResponse(
      {
        created: 1,
        choices: [
          {
            finish_reason: 'tool_calls',
            message: {
              role: 'assistant',
              content: null,
              tool_calls: [
                { id: 'call_9', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
              ],
            },
          },
        ],
      },
      request,
      deterministicContext(),
    );
    assert.equal(response.status, 'completed');
    assert.deepEqual(response.output, [
      {
        type: 'function_call',
        id: 'fc_2',
        call_id: 'call_9',
        name: 'get_weather',
        arguments: '{}',
        status: 'completed',
      },
    ]);
    assert.deepEqual(response.tools, [tool]);
  });

  it('streams text then calls as output items with argument deltas, each closed before the next opens', async () => {
    const chunk = (delta: unknown, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const sse = [
      chunk({ role: 'assistant', content: '' }),
      chunk({ content: 'Let me check.' }),
      chunk({
        tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'w', arguments: '' } }],
      }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"c":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"P"}' } }] }),
      chunk({
        tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 't', arguments: '{}' } }],
      }),
      chunk({}, 'tool_calls'),
      'data: [DONE]\n\n',
    ].join('');
    const request = validateResponses({ model: 'tiny', input: 'x', stream: true });
    const events = parseEvents(
      await collect(translateChatStreamToResponses(chunks(enc(sse)), request, deterministicContext())),
    );
    const summary = events.map((e) =>
      [
        e.event,
        e.data.output_index,
        (e.data.item as { type?: string } | undefined)?.type,
        e.data.delta ?? e.data.arguments,
      ]
        .filter((x) => x !== undefined)
        .join(' '),
    );
    assert.deepEqual(summary, [
      'response.created',
      'response.in_progress',
      'response.output_item.added 0 message',
      'response.content_part.added 0',
      'response.output_text.delta 0 Let me check.',
      'response.output_text.done 0',
      'response.content_part.done 0',
      'response.output_item.done 0 message',
      'response.output_item.added 1 function_call',
      'response.function_call_arguments.delta 1 {"c":',
      'response.function_call_arguments.delta 1 "P"}',
      'response.function_call_arguments.done 1 {"c":"P"}',
      'response.output_item.done 1 function_call',
      'response.output_item.added 2 function_call',
      'response.function_call_arguments.delta 2 {}',
      'response.function_call_arguments.done 2 {}',
      'response.output_item.done 2 function_call',
      'response.completed',
    ]);
    const completed = events.at(-1)!.data.response as { output: Array<Record<string, unknown>> };
    assert.deepEqual(
      completed.output.map((o) => [o.type, o.call_id ?? null, o.arguments ?? null]),
      [
        ['message', null, null],
        ['function_call', 'call_a', '{"c":"P"}'],
        ['function_call', 'call_b', '{}'],
      ],
    );
    assert.equal(new Set(events.map((e) => e.data.sequence_number)).size, events.length);
  });
});
