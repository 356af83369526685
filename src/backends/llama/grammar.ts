/**
 * The grammar an output plan is generated under. node-llama-cpp builds it from the JSON schema;
 * its number rule allows an exponent of up to 16 digits, so a random or confused model can write
 * `5e9999999` — valid JSON that every double-based parser reads as Infinity, and never an integer.
 * Numbers here are written without an exponent (at most 16 digits before and after the point:
 * always finite, integers exact up to 2^53).
 */
import { type LlamaGrammar, type LlamaModel, LlamaText } from 'node-llama-cpp';
import { UnsupportedParameterError } from '../../openai/errors.ts';
import type { OutputPlan } from './output-plan.ts';

/** node-llama-cpp 3.x's exponents, as its schema grammars and its built-in JSON grammar write them. */
const EXPONENTS = [' ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?', ' ([eE] [-+]? [0-9] [1-9]{0,15})?'];

export async function grammarFor(model: LlamaModel, plan: OutputPlan): Promise<LlamaGrammar | undefined> {
  const schema = plan.kind === 'json' || plan.kind === 'forced-tools' ? plan.schema : undefined;
  if (plan.kind === 'json' && schema === undefined)
    return withoutExponents(model, await model.llama.getGrammarFor('json'));
  if (schema === undefined) return undefined;
  let grammar: LlamaGrammar;
  try {
    // The schema was checked keyword by keyword (json-schema.ts); its static type cannot say so.
    grammar = await model.llama.createGrammarForJsonSchema(schema as never);
  } catch {
    throw new UnsupportedParameterError(
      plan.kind === 'json' ? 'response_format.json_schema.schema' : 'tools',
      'could not be turned into a grammar on this host',
    );
  }
  return withoutExponents(model, grammar);
}

async function withoutExponents(model: LlamaModel, grammar: LlamaGrammar): Promise<LlamaGrammar> {
  const text = EXPONENTS.reduce((gbnf, exponent) => gbnf.replaceAll(exponent, ''), grammar.grammar);
  if (text === grammar.grammar) return grammar;
  return model.llama.createGrammar({
    grammar: text,
    stopGenerationTriggers: grammar.stopGenerationTriggers,
    trimWhitespaceSuffix: grammar.trimWhitespaceSuffix,
  });
}

/** Text that ends a grammar's output (node-llama-cpp's JSON grammars end in blank lines). */
export function grammarStops(grammar: LlamaGrammar): string[] {
  return grammar.stopGenerationTriggers.flatMap((trigger) => {
    if (typeof trigger === 'string') return [trigger];
    if (trigger instanceof LlamaText) return [trigger.toString()];
    return [];
  });
}
