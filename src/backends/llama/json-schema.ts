/**
 * A client's JSON Schema → the subset node-llama-cpp turns into a grammar (GbnfJsonSchema). Every
 * keyword is either carried into the grammar or refused with a 400 naming it: a constraint the
 * grammar cannot enforce is never silently dropped. Annotations (title, description, …) are kept
 * or skipped, since they constrain nothing.
 */
import type { GbnfJsonSchema } from 'node-llama-cpp';
import { UnsupportedParameterError } from '../../openai/errors.ts';

type Obj = Record<string, unknown>;

const ANNOTATIONS = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
  // Object keys the grammar already honours by emitting every listed property.
  'required',
]);
const PRIMITIVES = new Set(['string', 'number', 'integer', 'boolean', 'null']);
/** The keywords each type takes; in `type: [..]` each alternative gets its own. */
const TYPE_KEYWORDS: Record<string, string[]> = {
  object: ['properties', 'additionalProperties', 'minProperties', 'maxProperties'],
  array: ['items', 'prefixItems', 'minItems', 'maxItems'],
  string: ['minLength', 'maxLength', 'format'],
};
const KNOWN = new Set([
  '$ref',
  'const',
  'enum',
  'anyOf',
  'oneOf',
  'type',
  ...Object.values(TYPE_KEYWORDS).flat(),
]);
const FORMATS = new Set(['date-time', 'time', 'date']);
/** Nesting bound: a hostile schema must not exhaust the stack. */
const MAX_DEPTH = 32;
/** Size bound (schemas, properties and enum values together): a grammar is compiled per request. */
const MAX_NODES = 4096;

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function refuse(param: string, what: string): never {
  throw new UnsupportedParameterError(param, `${what} cannot be enforced with a grammar on this host`);
}

/** How many schema parts a request may still use; shared by all the schemas of one request. */
export interface SchemaBudget {
  left: number;
}

export function schemaBudget(): SchemaBudget {
  return { left: MAX_NODES };
}

class Converter {
  readonly defs: Record<string, GbnfJsonSchema> = {};
  readonly defsPrefix: string;
  readonly #budget: SchemaBudget;
  constructor(defsPrefix: string, budget: SchemaBudget) {
    this.defsPrefix = defsPrefix;
    this.#budget = budget;
  }

  convert(schema: unknown, param: string, depth = 0): GbnfJsonSchema {
    if (depth > MAX_DEPTH) refuse(param, `a schema nested deeper than ${MAX_DEPTH} levels`);
    this.#count(param);
    if (!isObject(schema)) refuse(param, 'a value that is not a schema object');
    for (const key of ['$defs', 'definitions'] as const) {
      const defs = schema[key];
      if (defs === undefined) continue;
      if (!isObject(defs)) refuse(`${param}.${key}`, 'a definitions value that is not an object');
      for (const [name, def] of Object.entries(defs)) {
        this.defs[`${this.defsPrefix}${name}`] = this.convert(def, `${param}.${key}.${name}`, depth + 1);
      }
    }
    const keys = Object.keys(schema).filter(
      (k) => !ANNOTATIONS.has(k) && k !== '$defs' && k !== 'definitions',
    );
    const description = typeof schema.description === 'string' ? { description: schema.description } : {};
    for (const key of keys) if (!KNOWN.has(key)) refuse(`${param}.${key}`, `the keyword '${key}'`);
    const only = (allowed: string[]) => {
      for (const key of keys)
        if (!allowed.includes(key)) refuse(`${param}.${key}`, `the keyword '${key}' here`);
    };

    if ('$ref' in schema) {
      only(['$ref']);
      const ref = schema.$ref;
      const match = typeof ref === 'string' ? /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(ref) : null;
      if (!match) refuse(`${param}.$ref`, 'a reference other than #/$defs/NAME');
      return { $ref: `#/$defs/${this.defsPrefix}${match[1]}` } as GbnfJsonSchema;
    }
    if ('const' in schema) {
      only(['const']);
      return { const: this.primitive(schema.const, `${param}.const`), ...description } as GbnfJsonSchema;
    }
    if ('enum' in schema) {
      only(['enum', 'type']);
      if (!Array.isArray(schema.enum) || schema.enum.length === 0)
        refuse(`${param}.enum`, 'an enum that is not a non-empty array');
      const values = schema.enum.map((v, i) => this.primitive(v, `${param}.enum[${i}]`));
      return { enum: values, ...description } as GbnfJsonSchema;
    }
    for (const key of ['anyOf', 'oneOf'] as const) {
      if (!(key in schema)) continue;
      only([key]);
      const options = schema[key];
      if (!Array.isArray(options) || options.length === 0)
        refuse(`${param}.${key}`, `a '${key}' that is not a non-empty array`);
      return {
        oneOf: options.map((option, i) => this.convert(option, `${param}.${key}[${i}]`, depth + 1)),
        ...description,
      } as GbnfJsonSchema;
    }

    let type = schema.type;
    if (type === undefined && ('properties' in schema || 'additionalProperties' in schema)) type = 'object';
    if (type === undefined && ('items' in schema || 'prefixItems' in schema)) type = 'array';
    if (Array.isArray(type)) {
      // ["string", "null"]: one alternative per type, each with this schema's other keywords.
      const typed = Object.values(TYPE_KEYWORDS).flat();
      return {
        oneOf: type.map((t, i) => {
          const own = TYPE_KEYWORDS[t as string] ?? [];
          const alternative = Object.fromEntries(
            Object.entries(schema).filter(([key]) => !typed.includes(key) || own.includes(key)),
          );
          return this.convert({ ...alternative, type: t }, `${param}.type[${i}]`, depth + 1);
        }),
        ...description,
      } as GbnfJsonSchema;
    }
    if (typeof type !== 'string') refuse(param, "a schema without 'type' (any value)");
    switch (type) {
      case 'object':
        return this.object(schema, param, keys, depth, description);
      case 'array': {
        only(['type', 'items', 'prefixItems', 'minItems', 'maxItems']);
        const out: Obj = { type: 'array', ...description };
        if (schema.items !== undefined && schema.items !== true) {
          out.items = this.convert(schema.items, `${param}.items`, depth + 1);
        }
        if (schema.prefixItems !== undefined) {
          if (!Array.isArray(schema.prefixItems))
            refuse(`${param}.prefixItems`, 'a prefixItems that is not an array');
          out.prefixItems = schema.prefixItems.map((s, i) =>
            this.convert(s, `${param}.prefixItems[${i}]`, depth + 1),
          );
        }
        for (const key of ['minItems', 'maxItems']) {
          if (schema[key] !== undefined) out[key] = this.count(schema[key], `${param}.${key}`);
        }
        return out as GbnfJsonSchema;
      }
      case 'string': {
        only(['type', 'minLength', 'maxLength', 'format']);
        const out: Obj = { type: 'string', ...description };
        for (const key of ['minLength', 'maxLength']) {
          if (schema[key] !== undefined) out[key] = this.count(schema[key], `${param}.${key}`);
        }
        if (schema.format !== undefined) {
          if (typeof schema.format !== 'string' || !FORMATS.has(schema.format)) {
            refuse(`${param}.format`, `a format other than ${[...FORMATS].join(', ')}`);
          }
          out.format = schema.format;
        }
        return out as GbnfJsonSchema;
      }
      default:
        if (!PRIMITIVES.has(type)) refuse(`${param}.type`, `the type '${type.slice(0, 32)}'`);
        only(['type']);
        return { type, ...description } as GbnfJsonSchema;
    }
  }

  object(schema: Obj, param: string, keys: string[], depth: number, description: Obj): GbnfJsonSchema {
    for (const key of keys) {
      if (!['type', 'properties', 'additionalProperties', 'minProperties', 'maxProperties'].includes(key)) {
        refuse(`${param}.${key}`, `the keyword '${key}' here`);
      }
    }
    const out: Obj = { type: 'object', ...description };
    if (schema.properties !== undefined) {
      if (!isObject(schema.properties))
        refuse(`${param}.properties`, 'a properties value that is not an object');
      out.properties = Object.fromEntries(
        Object.entries(schema.properties).map(([name, s]) => [
          name,
          this.convert(s, `${param}.properties.${name}`, depth + 1),
        ]),
      );
    }
    const extra = schema.additionalProperties;
    if (extra === true) out.additionalProperties = true;
    else if (extra !== undefined && extra !== false) {
      out.additionalProperties = this.convert(extra, `${param}.additionalProperties`, depth + 1);
    } else out.additionalProperties = false;
    for (const key of ['minProperties', 'maxProperties']) {
      if (schema[key] !== undefined) out[key] = this.count(schema[key], `${param}.${key}`);
    }
    return out as GbnfJsonSchema;
  }

  #count(param: string): void {
    if (--this.#budget.left < 0) refuse(param, `schemas with more than ${MAX_NODES} parts in one request`);
  }

  primitive(value: unknown, param: string): string | number | boolean | null {
    this.#count(param);
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) {
      return value as string | number | boolean | null;
    }
    return refuse(param, 'an object or array value');
  }

  count(value: unknown, param: string): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
      refuse(param, 'a count that is not a non-negative integer');
    return value;
  }
}

/**
 * The grammar schema for `schema`; `param` names it in errors (e.g. "tools[0].function.parameters").
 * `defsPrefix` keeps the definitions of several schemas in one grammar apart.
 */
export function grammarSchemaOf(
  schema: unknown,
  param: string,
  defsPrefix = '',
  budget: SchemaBudget = schemaBudget(),
): GbnfJsonSchema {
  const converter = new Converter(defsPrefix, budget);
  const converted = converter.convert(schema, param);
  return withDefs(converted, converter.defs);
}

/** Attaches `defs` at the root, where node-llama-cpp resolves `#/$defs/NAME`. */
export function withDefs(schema: GbnfJsonSchema, defs: Record<string, GbnfJsonSchema>): GbnfJsonSchema {
  if (Object.keys(defs).length === 0) return schema;
  const own = (schema as { $defs?: Record<string, GbnfJsonSchema> }).$defs ?? {};
  return { ...schema, $defs: { ...own, ...defs } } as GbnfJsonSchema;
}
