/**
 * How the in-process backend's output becomes OpenAI choices, non-streamed and streamed: text
 * (free or grammar-constrained JSON) as `content`; tool calls as `tool_calls` with
 * `finish_reason: "tool_calls"`, streamed as OpenAI streams them (the call's id and name first,
 * then its arguments in pieces).
 */
import { randomBytes } from 'node:crypto';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionMessageFunctionToolCall,
} from 'openai/resources/chat/completions';
import { forcedCallsOf, type OutputPlan, type PlannedCall } from './output-plan.ts';

export type FinishReason = 'stop' | 'length';

export interface GenerationResult {
  completionTokens: number;
  finishReason: FinishReason;
  /** Calls the model chose to make (tool_choice auto). */
  calls?: PlannedCall[];
}

type Choice = ChatCompletion.Choice;
type ChunkChoice = ChatCompletionChunk.Choice;
type Delta = ChunkChoice['delta'];

function callId(): string {
  return `call_${randomBytes(12).toString('hex')}`;
}

function toolCall(call: PlannedCall, id = callId()): ChatCompletionMessageFunctionToolCall {
  return { id, type: 'function', function: { name: call.name, arguments: call.arguments } };
}

function chunk(delta: Delta, finish: ChunkChoice['finish_reason'] = null): ChunkChoice {
  return { index: 0, delta, logprobs: null, finish_reason: finish };
}

/** Shapes one chat answer; `stream*` calls come in order: start, pieces, end. */
export class ChatAnswer {
  readonly #plan: OutputPlan;
  /** A named call's id, sent with its first chunk and kept for the final message. */
  readonly #namedId = callId();
  #text = '';

  constructor(plan: OutputPlan) {
    this.#plan = plan;
  }

  /** Whether generated text is the named call's arguments rather than content. */
  get #argumentsStream(): boolean {
    return this.#plan.kind === 'forced-tools' && this.#plan.name !== undefined;
  }

  #calls(result: GenerationResult): PlannedCall[] {
    if (this.#plan.kind === 'forced-tools') return forcedCallsOf(this.#plan, this.#text);
    return result.calls ?? [];
  }

  #finish(result: GenerationResult, calls: PlannedCall[]): Choice['finish_reason'] {
    return calls.length > 0 && result.finishReason === 'stop' ? 'tool_calls' : result.finishReason;
  }

  /** The non-streamed choice for the whole generated `text`. */
  choice(text: string, result: GenerationResult): Choice {
    this.#text = text;
    const calls = this.#calls(result);
    const toolText = this.#plan.kind === 'forced-tools';
    const message: Choice['message'] = {
      role: 'assistant',
      content: toolText ? null : text,
      refusal: null,
      ...(calls.length > 0
        ? {
            tool_calls: calls.map((call, i) =>
              toolCall(call, i === 0 && this.#argumentsStream ? this.#namedId : undefined),
            ),
          }
        : {}),
    };
    return { index: 0, message, logprobs: null, finish_reason: this.#finish(result, calls) };
  }

  streamStart(): ChunkChoice[] {
    if (this.#argumentsStream) {
      const name = (this.#plan as { name: string }).name;
      return [
        chunk({
          role: 'assistant',
          content: null,
          tool_calls: [{ index: 0, id: this.#namedId, type: 'function', function: { name, arguments: '' } }],
        }),
      ];
    }
    return [chunk({ role: 'assistant', content: this.#plan.kind === 'forced-tools' ? null : '' })];
  }

  streamPiece(text: string): ChunkChoice[] {
    this.#text += text;
    if (this.#argumentsStream) return [chunk({ tool_calls: [{ index: 0, function: { arguments: text } }] })];
    // A `required` answer names its function inside the JSON: its calls go out whole at the end.
    if (this.#plan.kind === 'forced-tools') return [];
    return [chunk({ content: text })];
  }

  streamEnd(result: GenerationResult): ChunkChoice[] {
    const calls = this.#calls(result);
    const out: ChunkChoice[] = [];
    if (!this.#argumentsStream) {
      calls.forEach((call, index) => {
        out.push(
          chunk({
            tool_calls: [
              {
                index,
                id: callId(),
                type: 'function',
                function: { name: call.name, arguments: call.arguments },
              },
            ],
          }),
        );
      });
    }
    out.push(chunk({}, this.#finish(result, calls)));
    return out;
  }
}
