/**
 * What a chat request asks the in-process model to produce, decided before generation:
 * free text; JSON (response_format json_object / json_schema, enforced by a grammar); or tool
 * calls. Tools are shown to the model through its chat template (node-llama-cpp's function
 * calling); `auto` lets the model choose, `required` and a named function are enforced by a
 * grammar over the call's JSON.
 */
import type { ChatModelFunctions, GbnfJsonSchema } from 'node-llama-cpp';
import { InvalidRequestError } from '../../errors.ts';
import { UnsupportedParameterError } from '../../openai/errors.ts';
import type { ChatCompletionRequest } from '../../openai/schemas.ts';
import { grammarSchemaOf, schemaBudget } from './json-schema.ts';

/** Bound on the calls one forced answer may hold when parallel calls are allowed. */
export const MAX_PARALLEL_CALLS = 8;

export type OutputPlan =
  | { kind: 'text'; functions?: undefined }
  /** `schema` undefined: any JSON value (json_object). */
  | { kind: 'json'; schema: GbnfJsonSchema | undefined; functions?: undefined }
  | { kind: 'auto-tools'; functions: ChatModelFunctions; parallel: boolean }
  /** `name` set: that function's arguments are generated; else `{name, arguments}` (a list when parallel). */
  | {
      kind: 'forced-tools';
      functions: ChatModelFunctions;
      schema: GbnfJsonSchema;
      name: string | undefined;
      parallel: boolean;
    };

const EMPTY_PARAMS: GbnfJsonSchema = { type: 'object', properties: {} } as GbnfJsonSchema;

function functionsOf(body: ChatCompletionRequest): ChatModelFunctions {
  const functions: Record<string, { description?: string; params?: GbnfJsonSchema }> = {};
  const budget = schemaBudget();
  body.tools?.forEach((tool, i) => {
    const { name, description, parameters } = tool.function;
    if (name in functions) {
      throw new InvalidRequestError(
        `Invalid 'tools[${i}].function.name': another tool has the same name`,
        'invalid_value',
        `tools[${i}].function.name`,
      );
    }
    functions[name] = {
      ...(description ? { description } : {}),
      params:
        parameters === undefined
          ? EMPTY_PARAMS
          : grammarSchemaOf(parameters, `tools[${i}].function.parameters`, `t${i}_`, budget),
    };
  });
  return functions;
}

export function outputPlanOf(body: ChatCompletionRequest): OutputPlan {
  const tools = body.tools ?? [];
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none');
  const format = body.response_format;
  const json: OutputPlan | undefined =
    format?.type === 'json_object'
      ? { kind: 'json', schema: undefined }
      : format?.type === 'json_schema'
        ? {
            kind: 'json',
            schema:
              format.json_schema.schema === undefined
                ? undefined
                : grammarSchemaOf(format.json_schema.schema, 'response_format.json_schema.schema'),
          }
        : undefined;
  if (choice === 'none' || tools.length === 0) {
    if (choice !== 'none' && choice !== 'auto') {
      throw new InvalidRequestError(
        "Invalid 'tool_choice': it asks for a tool call but 'tools' is empty",
        'invalid_value',
        'tool_choice',
      );
    }
    return json ?? { kind: 'text' };
  }
  const functions = functionsOf(body);
  const parallel = body.parallel_tool_calls !== false;
  if (json) {
    throw new UnsupportedParameterError(
      'response_format',
      "together with tools (unless tool_choice is 'none'): this host enforces one grammar per answer",
    );
  }
  if (choice === 'auto') return { kind: 'auto-tools', functions, parallel };
  if (choice === 'required') {
    const call = {
      oneOf: Object.entries(functions).map(([name, fn]) => ({
        type: 'object',
        properties: { name: { const: name }, arguments: fn.params ?? EMPTY_PARAMS },
      })),
    } as GbnfJsonSchema;
    const schema = parallel
      ? ({ type: 'array', items: call, minItems: 1, maxItems: MAX_PARALLEL_CALLS } as GbnfJsonSchema)
      : call;
    return { kind: 'forced-tools', functions, schema, name: undefined, parallel };
  }
  const name = choice.function.name;
  const fn = functions[name];
  if (!fn) {
    throw new InvalidRequestError(
      "Invalid 'tool_choice.function.name': no tool in 'tools' has this name",
      'invalid_value',
      'tool_choice.function.name',
    );
  }
  return { kind: 'forced-tools', functions, schema: fn.params ?? EMPTY_PARAMS, name, parallel: false };
}

export interface PlannedCall {
  name: string;
  /** The arguments as JSON text, as OpenAI sends them. */
  arguments: string;
}

/**
 * The calls in a forced answer's text. Text cut short (max_tokens) is not JSON: a named call then
 * carries the partial arguments, as OpenAI's own do; a `required` answer carries none.
 */
export function forcedCallsOf(
  plan: Extract<OutputPlan, { kind: 'forced-tools' }>,
  text: string,
): PlannedCall[] {
  const json = text.trim();
  if (plan.name !== undefined) return [{ name: plan.name, arguments: json }];
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return [];
  }
  const list = Array.isArray(value) ? value : [value];
  return list.flatMap((call): PlannedCall[] => {
    const { name, arguments: args } = (call ?? {}) as { name?: unknown; arguments?: unknown };
    return typeof name === 'string' ? [{ name, arguments: JSON.stringify(args ?? {}) }] : [];
  });
}
