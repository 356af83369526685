import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import type { FunctionTool } from 'openai/resources/responses/responses';
import type { MeshNode } from '../../src/node/mesh-node.ts';
import { seesModel, TestCluster, waitUntil } from '../helpers/cluster.ts';

/**
 * Agent-grade calls with the official `openai` client through a client node to a REMOTE host that
 * serves the tiny GGUF in-process, sealed end to end. The model's weights are random: what makes
 * the arguments and JSON valid is the grammar each request is generated under.
 */

const WEATHER_PARAMS = {
  type: 'object',
  properties: {
    city: { type: 'string', enum: ['Paris', 'Rome', 'Oslo'] },
    days: { type: 'integer' },
    metric: { type: 'boolean' },
  },
  required: ['city', 'days', 'metric'],
  additionalProperties: false,
} as const;

const TOOLS: ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather for a city',
      parameters: WEATHER_PARAMS,
      strict: true,
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_time',
      description: 'Time in a zone',
      parameters: {
        type: 'object',
        properties: { zone: { type: 'string', enum: ['UTC', 'CET'] } },
        required: ['zone'],
        additionalProperties: false,
      },
    },
  },
];

const ANSWER_SCHEMA = {
  type: 'object',
  properties: {
    verdict: { type: 'string', enum: ['yes', 'no'] },
    score: { type: 'integer' },
    tags: { type: 'array', items: { type: 'string', enum: ['a', 'b'] }, maxItems: 3 },
  },
  required: ['verdict', 'score', 'tags'],
  additionalProperties: false,
} as const;

/** Every required property present with the declared type (the schemas above, checked by hand). */
function assertWeatherArgs(json: string): void {
  const args = JSON.parse(json) as Record<string, unknown>;
  assert.ok(['Paris', 'Rome', 'Oslo'].includes(args.city as string), `city: ${json}`);
  assert.ok(Number.isInteger(args.days), `days: ${json}`);
  assert.equal(typeof args.metric, 'boolean');
  assert.deepEqual(Object.keys(args).sort(), ['city', 'days', 'metric']);
}

function assertToolArgs(name: string, json: string): void {
  if (name === 'get_weather') {
    assertWeatherArgs(json);
    return;
  }
  assert.equal(name, 'get_time');
  assert.ok(['UTC', 'CET'].includes((JSON.parse(json) as { zone: string }).zone), json);
}

function assertAnswer(json: string): void {
  const value = JSON.parse(json) as Record<string, unknown>;
  assert.ok(['yes', 'no'].includes(value.verdict as string), json);
  assert.ok(Number.isInteger(value.score), json);
  assert.ok(Array.isArray(value.tags) && value.tags.every((t) => t === 'a' || t === 'b'), json);
  assert.ok(value.tags.length <= 3);
}

/** Streamed tool_calls deltas reassembled as a client does: by index, arguments concatenated. */
async function collectToolCalls(stream: AsyncIterable<OpenAI.ChatCompletionChunk>) {
  const calls: { id: string; name: string; arguments: string }[] = [];
  let finish: string | null = null;
  let chunks = 0;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    for (const delta of choice.delta.tool_calls ?? []) {
      chunks++;
      calls[delta.index] ??= { id: '', name: '', arguments: '' };
      const call = calls[delta.index]!;
      if (delta.id) call.id = delta.id;
      if (delta.function?.name) call.name = delta.function.name;
      call.arguments += delta.function?.arguments ?? '';
    }
    finish = choice.finish_reason ?? finish;
  }
  return { calls, finish, chunks };
}

describe('agent API (tools, structured outputs, /v1/responses) through a remote encrypted host', () => {
  const cluster = new TestCluster();
  let client: MeshNode;
  let openai: OpenAI;
  const base = { model: 'tiny', seed: 7, max_tokens: 400 } as const;
  const user = [{ role: 'user' as const, content: 'What is the weather in Paris?' }];

  before(async () => {
    const host = await cluster.start('host', {
      model: { path: await cluster.tinyModel(), name: 'tiny', threads: 1, contextSize: 2048, parallel: 2 },
      e2e: true,
    });
    client = await cluster.start('client', { client: true, join: [host.mesh.inviteToken()] });
    await waitUntil(() => seesModel(client, 'tiny'), 'client to learn the host model', 60_000);
    openai = new OpenAI({ baseURL: `${client.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(() => cluster.stopAll());

  test('a forced named tool call returns parseable arguments with every required property', async () => {
    const raw = await openai.chat.completions
      .create({
        ...base,
        messages: user,
        tools: TOOLS,
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
      })
      .withResponse();
    assert.equal(raw.response.headers.get('x-mesh-e2e'), 'encrypted');
    const choice = raw.data.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    const [call] = choice.message.tool_calls ?? [];
    assert.ok(call && call.type === 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.match(call.id, /^call_/);
    assertWeatherArgs(call.function.arguments);
  });

  test('a forced named tool call, streamed, arrives as OpenAI-shaped tool_calls deltas', async () => {
    const stream = await openai.chat.completions.create({
      ...base,
      messages: user,
      tools: TOOLS,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      stream: true,
    });
    const { calls, finish, chunks } = await collectToolCalls(stream);
    assert.equal(finish, 'tool_calls');
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.name, 'get_weather');
    assert.match(calls[0]!.id, /^call_/);
    assert.ok(chunks > 2, `arguments streamed in pieces (${chunks} deltas)`);
    assertWeatherArgs(calls[0]!.arguments);
  });

  test('tool_choice "required" returns valid calls, streamed and not', async () => {
    const completion = await openai.chat.completions.create({
      ...base,
      messages: user,
      tools: TOOLS,
      tool_choice: 'required',
    });
    const choice = completion.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    const calls = choice.message.tool_calls ?? [];
    assert.ok(calls.length >= 1);
    for (const call of calls) {
      assert.ok(call.type === 'function');
      assertToolArgs(call.function.name, call.function.arguments);
    }

    const stream = await openai.chat.completions.create({
      ...base,
      messages: user,
      tools: TOOLS,
      tool_choice: 'required',
      parallel_tool_calls: false,
      stream: true,
    });
    const streamed = await collectToolCalls(stream);
    assert.equal(streamed.finish, 'tool_calls');
    assert.equal(streamed.calls.length, 1, 'parallel_tool_calls: false gives one call');
    assertToolArgs(streamed.calls[0]!.name, streamed.calls[0]!.arguments);
  });

  test('a conversation continues after a tool result', async () => {
    const first = await openai.chat.completions.create({
      ...base,
      messages: user,
      tools: TOOLS,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const call = first.choices[0]!.message.tool_calls![0]!;
    assert.ok(call.type === 'function');
    const next = await openai.chat.completions.create({
      model: 'tiny',
      seed: 7,
      max_tokens: 8,
      tools: TOOLS,
      messages: [
        ...user,
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '{"temperature_c": 21}' },
      ],
    });
    const choice = next.choices[0]!;
    assert.ok(['stop', 'length', 'tool_calls'].includes(choice.finish_reason));
    assert.ok((next.usage?.completion_tokens ?? 0) > 0);
    // The history grew by the call and its result: the prompt is longer than the first one's.
    assert.ok((next.usage?.prompt_tokens ?? 0) > (first.usage?.prompt_tokens ?? 0));
  });

  test('json_schema output parses and validates against its schema, streamed and not', async () => {
    const format = {
      type: 'json_schema' as const,
      json_schema: { name: 'verdict', strict: true, schema: ANSWER_SCHEMA },
    };
    const completion = await openai.chat.completions.create({
      ...base,
      messages: user,
      response_format: format,
    });
    assert.equal(completion.choices[0]!.finish_reason, 'stop');
    assertAnswer(completion.choices[0]!.message.content!);

    const stream = await openai.chat.completions.create({
      ...base,
      messages: user,
      response_format: format,
      stream: true,
    });
    let text = '';
    let pieces = 0;
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) {
        text += content;
        pieces++;
      }
    }
    assert.ok(pieces > 1);
    assertAnswer(text);

    const any = await openai.chat.completions.create({
      ...base,
      messages: user,
      response_format: { type: 'json_object' },
      max_tokens: 1000,
    });
    // Any JSON value: it parses whenever the model finished it within max_tokens.
    assert.ok(['stop', 'length'].includes(any.choices[0]!.finish_reason));
    if (any.choices[0]!.finish_reason === 'stop') JSON.parse(any.choices[0]!.message.content!);
  });

  test('/v1/responses with a function tool returns a function_call item, streamed and not', async () => {
    const tool: FunctionTool = {
      type: 'function',
      name: 'get_weather',
      description: 'Weather for a city',
      parameters: WEATHER_PARAMS as unknown as Record<string, unknown>,
      strict: true,
    };
    const request = {
      model: 'tiny',
      input: 'What is the weather in Paris?',
      tools: [tool],
      tool_choice: { type: 'function' as const, name: 'get_weather' },
      max_output_tokens: 400,
    };
    const response = await openai.responses.create(request);
    assert.equal(response.status, 'completed');
    const item = response.output.find((o) => o.type === 'function_call');
    assert.ok(item && item.type === 'function_call');
    assert.equal(item.name, 'get_weather');
    assertWeatherArgs(item.arguments);

    const stream = await openai.responses.create({ ...request, stream: true });
    let deltas = '';
    let done: { arguments: string; name?: string } | undefined;
    let added = false;
    let finalItem: OpenAI.Responses.ResponseOutputItem | undefined;
    for await (const event of stream) {
      if (event.type === 'response.output_item.added' && event.item.type === 'function_call') added = true;
      if (event.type === 'response.function_call_arguments.delta') deltas += event.delta;
      if (event.type === 'response.function_call_arguments.done') done = event;
      if (event.type === 'response.completed') finalItem = event.response.output[0];
    }
    assert.ok(added, 'an output_item.added event opened the call');
    assert.ok(done);
    assert.equal(done.arguments, deltas);
    assertWeatherArgs(done.arguments);
    assert.ok(finalItem?.type === 'function_call');

    // The call's result goes back as a function_call_output item; the model answers on.
    const followUp = await openai.responses.create({
      model: 'tiny',
      max_output_tokens: 8,
      tools: [tool],
      input: [
        { role: 'user', content: 'What is the weather in Paris?' },
        { type: 'function_call', call_id: item.call_id, name: item.name, arguments: item.arguments },
        { type: 'function_call_output', call_id: item.call_id, output: '{"temperature_c": 21}' },
      ],
    });
    assert.ok(['completed', 'incomplete'].includes(followUp.status ?? ''));
    assert.ok((followUp.usage?.output_tokens ?? 0) > 0);
  });

  test('/v1/responses text.format json_schema is enforced', async () => {
    const response = await openai.responses.create({
      model: 'tiny',
      input: 'Judge it.',
      max_output_tokens: 400,
      text: { format: { type: 'json_schema', name: 'verdict', strict: true, schema: ANSWER_SCHEMA } },
    });
    assert.equal(response.status, 'completed');
    assertAnswer(response.output_text);
  });

  test('embeddings from the in-process model, float and base64', async () => {
    const floats = await openai.embeddings.create({
      model: 'tiny',
      input: ['hello', 'world'],
      encoding_format: 'float',
    });
    assert.equal(floats.data.length, 2);
    const vector = floats.data[0]!.embedding;
    assert.ok(vector.length > 0 && vector.every(Number.isFinite));
    // The client decodes base64 itself: the same vector either way.
    const decoded = await openai.embeddings.create({ model: 'tiny', input: 'hello' });
    assert.equal(decoded.data[0]!.embedding.length, vector.length);
    assert.ok(decoded.data[0]!.embedding.every((x, i) => Math.abs(x - vector[i]!) < 1e-5));
  });

  test('each parameter the host cannot honour is a 400 naming it', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ n: 2 }, 'n'],
      [{ logprobs: true }, 'logprobs'],
      [{ top_logprobs: 3 }, 'top_logprobs'],
      [{ logit_bias: { '42': 5 } }, 'logit_bias'],
      [{ audio: { voice: 'alloy', format: 'mp3' } }, 'audio'],
      [{ prediction: { type: 'content', content: 'x' } }, 'prediction'],
      [
        {
          messages: [
            { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png' } }] },
          ],
        },
        'messages[0].content[0]',
      ],
      [
        {
          response_format: {
            type: 'json_schema',
            json_schema: {
              name: 'x',
              schema: { type: 'object', properties: { s: { type: 'string', pattern: '^a' } } },
            },
          },
        },
        'response_format.json_schema.schema.properties.s.pattern',
      ],
      [
        {
          tools: [
            {
              type: 'function',
              function: {
                name: 'f',
                parameters: { type: 'object', properties: { n: { type: 'number', minimum: 1 } } },
              },
            },
          ],
        },
        'tools[0].function.parameters.properties.n.minimum',
      ],
      [{ tools: TOOLS, response_format: { type: 'json_object' } }, 'response_format'],
    ];
    for (const [over, param] of cases) {
      await assert.rejects(
        openai.chat.completions.create({ model: 'tiny', messages: user, max_tokens: 4, ...over } as never),
        (error: unknown) => {
          assert.ok(error instanceof OpenAI.BadRequestError, `${param}: ${error}`);
          assert.equal(error.status, 400);
          assert.equal(error.code, 'unsupported_parameter', param);
          assert.equal(error.param, param);
          assert.ok(error.message.includes(param));
          return true;
        },
      );
    }
    // On /v1/responses the refused field is named as that request spells it.
    await assert.rejects(
      openai.responses.create({
        model: 'tiny',
        input: 'x',
        text: { format: { type: 'json_schema', name: 'n', schema: { type: 'string', pattern: '^a' } } },
      }),
      (error: unknown) =>
        error instanceof OpenAI.BadRequestError && error.param === 'text.format.schema.pattern',
    );
    await assert.rejects(
      openai.responses.create({
        model: 'tiny',
        input: 'x',
        tools: [
          {
            type: 'function',
            name: 'f',
            strict: false,
            parameters: { type: 'object', properties: { n: { type: 'number', maximum: 3 } } },
          },
        ],
      }),
      (error: unknown) =>
        error instanceof OpenAI.BadRequestError && error.param === 'tools[0].parameters.properties.n.maximum',
    );
    await assert.rejects(
      openai.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 4, echo: true }),
      (error: unknown) => error instanceof OpenAI.BadRequestError && error.param === 'echo',
    );
    await assert.rejects(
      openai.embeddings.create({ model: 'tiny', input: 'x', dimensions: 8 }),
      (error: unknown) => error instanceof OpenAI.BadRequestError && error.param === 'dimensions',
    );
  });
});
