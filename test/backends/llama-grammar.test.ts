import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getLlama, LlamaLogLevel, type LlamaModel } from 'node-llama-cpp';
import { writeTinyGguf } from '../../src/backends/gguf/tiny-model.ts';
import { grammarFor } from '../../src/backends/llama/grammar.ts';
import { grammarSchemaOf } from '../../src/backends/llama/json-schema.ts';
import { forcedCallsOf, outputPlanOf } from '../../src/backends/llama/output-plan.ts';
import { InvalidRequestError } from '../../src/errors.ts';
import { validateChatCompletion } from '../../src/openai/request.ts';

function refuses(fn: () => unknown, param: string) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof InvalidRequestError);
    assert.equal(error.code, 'unsupported_parameter');
    assert.equal(error.param, param);
    assert.ok(error.message.includes(`'${param}'`), error.message);
    return true;
  });
}

describe('JSON Schema → grammar schema', () => {
  it('carries what a grammar enforces', () => {
    const schema = grammarSchemaOf(
      {
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        title: 'x',
        type: 'object',
        properties: {
          a: { type: ['string', 'null'], maxLength: 4 },
          b: { anyOf: [{ const: 1 }, { enum: ['x', true, null] }] },
          c: { type: 'array', items: { $ref: '#/$defs/item' }, minItems: 1, maxItems: 2 },
          d: { type: 'string', format: 'date' },
        },
        required: ['a', 'b', 'c', 'd'],
        $defs: { item: { type: 'integer' } },
      },
      'p',
      'q_',
    );
    assert.deepEqual(schema, {
      type: 'object',
      properties: {
        a: { oneOf: [{ type: 'string', maxLength: 4 }, { type: 'null' }] },
        b: { oneOf: [{ const: 1 }, { enum: ['x', true, null] }] },
        c: { type: 'array', items: { $ref: '#/$defs/q_item' }, minItems: 1, maxItems: 2 },
        d: { type: 'string', format: 'date' },
      },
      additionalProperties: false,
      $defs: { q_item: { type: 'integer' } },
    });
  });

  it('refuses, by path, every keyword a grammar cannot enforce', () => {
    const cases: Array<[unknown, string]> = [
      [{ type: 'string', pattern: '^a' }, 'p.pattern'],
      [{ type: 'number', minimum: 0 }, 'p.minimum'],
      [
        { type: 'object', properties: { n: { type: 'integer', multipleOf: 2 } } },
        'p.properties.n.multipleOf',
      ],
      [{ type: 'array', items: { type: 'string' }, uniqueItems: true }, 'p.uniqueItems'],
      [{ allOf: [{ type: 'string' }] }, 'p.allOf'],
      [{ type: 'string', format: 'email' }, 'p.format'],
      [{ $ref: 'https://example.com/s.json' }, 'p.$ref'],
      [{ type: 'object', patternProperties: {} }, 'p.patternProperties'],
      [{}, 'p'],
      [true, 'p'],
    ];
    for (const [schema, param] of cases) refuses(() => grammarSchemaOf(schema, 'p'), param);
  });

  it('bounds size', () => {
    const values = Array.from({ length: 5000 }, (_, i) => `v${i}`);
    refuses(() => grammarSchemaOf({ type: 'string', enum: values }, 'p'), 'p.enum[4095]');
  });

  it('bounds nesting', () => {
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) deep = { type: 'array', items: deep };
    assert.throws(() => grammarSchemaOf(deep, 'p'), InvalidRequestError);
  });
});

describe('output plans', () => {
  const chat = (over: Record<string, unknown>) =>
    validateChatCompletion({ model: 'm', messages: [{ role: 'user', content: 'x' }], ...over });
  const tool = (name: string, parameters?: unknown) => ({ type: 'function', function: { name, parameters } });

  it('picks text, json, auto and forced tool plans', () => {
    assert.equal(outputPlanOf(chat({})).kind, 'text');
    assert.equal(outputPlanOf(chat({ response_format: { type: 'json_object' } })).kind, 'json');
    assert.equal(outputPlanOf(chat({ tools: [tool('f')] })).kind, 'auto-tools');
    assert.equal(outputPlanOf(chat({ tools: [tool('f')], tool_choice: 'none' })).kind, 'text');
    const named = outputPlanOf(
      chat({ tools: [tool('f'), tool('g')], tool_choice: { type: 'function', function: { name: 'g' } } }),
    );
    assert.ok(named.kind === 'forced-tools' && named.name === 'g');
    const required = outputPlanOf(chat({ tools: [tool('f')], tool_choice: 'required' }));
    assert.ok(required.kind === 'forced-tools' && required.name === undefined && required.parallel);
  });

  it('refuses impossible choices with the field named', () => {
    assert.throws(
      () =>
        outputPlanOf(
          chat({ tools: [tool('f')], tool_choice: { type: 'function', function: { name: 'zz' } } }),
        ),
      (e: unknown) => e instanceof InvalidRequestError && e.param === 'tool_choice.function.name',
    );
    assert.throws(
      () => outputPlanOf(chat({ tool_choice: 'required' })),
      (e: unknown) => e instanceof InvalidRequestError && e.param === 'tool_choice',
    );
    assert.throws(
      () => outputPlanOf(chat({ tools: [tool('f'), tool('f')] })),
      (e: unknown) => e instanceof InvalidRequestError && e.param === 'tools[1].function.name',
    );
  });

  it('reads forced calls back from the generated JSON', () => {
    const plan = outputPlanOf(chat({ tools: [tool('f'), tool('g')], tool_choice: 'required' }));
    assert.ok(plan.kind === 'forced-tools');
    assert.deepEqual(
      forcedCallsOf(plan, '[{"name":"g","arguments":{"a":1}}, {"name":"f","arguments":{}}]\n'),
      [
        { name: 'g', arguments: '{"a":1}' },
        { name: 'f', arguments: '{}' },
      ],
    );
    assert.deepEqual(forcedCallsOf(plan, '[{"name":"g","argu'), []);
  });
});

describe('grammars', () => {
  let dir: string;
  let model: LlamaModel;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), `mesh-llm-grammar-${process.pid}-`));
    await writeTinyGguf(join(dir, 'tiny.gguf'), { seed: 2 });
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    model = await llama.loadModel({ modelPath: join(dir, 'tiny.gguf') });
  });
  after(async () => {
    await model?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('write numbers without an exponent (a huge exponent parses as Infinity)', async () => {
    const plan = outputPlanOf(
      validateChatCompletion({
        model: 'm',
        messages: [{ role: 'user', content: 'x' }],
        response_format: {
          type: 'json_schema',
          json_schema: {
            name: 'n',
            schema: { type: 'object', properties: { i: { type: 'integer' }, f: { type: 'number' } } },
          },
        },
      }),
    );
    const grammar = await grammarFor(model, plan);
    assert.ok(grammar);
    assert.match(grammar.grammar, /integer-number-rule ::= /);
    assert.doesNotMatch(grammar.grammar, /\[eE\]/);
    const any = await grammarFor(model, { kind: 'json', schema: undefined });
    assert.doesNotMatch(any!.grammar, /\[eE\]/);
    assert.equal(await grammarFor(model, { kind: 'text' }), undefined);
  });
});
