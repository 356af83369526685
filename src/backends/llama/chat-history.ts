/**
 * OpenAI chat messages → node-llama-cpp chat history, which the model's chat wrapper renders with
 * its own template: an assistant's tool_calls become function calls, and each `tool` message
 * becomes the result of the call it answers, so the template shows calls and results as the
 * model was trained to see them.
 */
import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelResponse } from 'node-llama-cpp';
import { InvalidRequestError } from '../../errors.ts';
import { UnsupportedParameterError } from '../../openai/errors.ts';
import type { ChatMessage } from '../../openai/schemas.ts';

function textOf(content: ChatMessage['content'], param: string): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content
    .map((part, j) => {
      if (part.type === 'text' && typeof part.text === 'string') return part.text;
      if (part.type === 'refusal' && typeof part.refusal === 'string') return part.refusal;
      throw new UnsupportedParameterError(
        `${param}[${j}]`,
        `(a '${part.type}' part): this in-process host takes text only`,
      );
    })
    .join('');
}

function parseArguments(json: string, param: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    throw new InvalidRequestError(`Invalid '${param}': must be a JSON string`, 'invalid_value', param);
  }
}

/** The chat history for generation, ending with the (empty) model turn to be generated. */
export function chatHistoryOf(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  /** Calls still waiting for their result, by call id, and the message that made them. */
  const pending = new Map<string, ChatModelFunctionCall>();
  let caller = -1;
  const requireResults = () => {
    if (pending.size === 0) return;
    // As OpenAI: every call is answered by a tool message before the conversation goes on.
    throw new InvalidRequestError(
      `Invalid 'messages[${caller}].tool_calls': each call needs a 'tool' message answering it before the next message`,
      'invalid_value',
      `messages[${caller}].tool_calls`,
    );
  };
  messages.forEach((message, i) => {
    const param = `messages[${i}]`;
    if (message.role !== 'tool' && message.role !== 'function') requireResults();
    switch (message.role) {
      case 'system':
      case 'developer':
        history.push({ type: 'system', text: textOf(message.content, `${param}.content`) });
        return;
      case 'user':
        history.push({ type: 'user', text: textOf(message.content, `${param}.content`) });
        return;
      case 'assistant': {
        const response: ChatModelResponse['response'] = [];
        const text = textOf(message.content, `${param}.content`);
        if (text) response.push(text);
        caller = i;
        message.tool_calls?.forEach((call, j) => {
          const item: ChatModelFunctionCall = {
            type: 'functionCall',
            name: call.function.name,
            params: parseArguments(call.function.arguments, `${param}.tool_calls[${j}].function.arguments`),
            result: undefined,
            startsNewChunk: j === 0,
          };
          pending.set(call.id, item);
          response.push(item);
        });
        if (message.function_call) {
          const item: ChatModelFunctionCall = {
            type: 'functionCall',
            name: message.function_call.name,
            params: parseArguments(message.function_call.arguments, `${param}.function_call.arguments`),
            result: undefined,
          };
          pending.set(`function:${item.name}`, item);
          response.push(item);
        }
        history.push({ type: 'model', response });
        return;
      }
      case 'tool':
      case 'function': {
        const key = message.role === 'tool' ? message.tool_call_id : `function:${message.name}`;
        const call = pending.get(key);
        if (!call) {
          const field = message.role === 'tool' ? 'tool_call_id' : 'name';
          throw new InvalidRequestError(
            `Invalid '${param}.${field}': no preceding assistant tool call has this id`,
            'invalid_value',
            `${param}.${field}`,
          );
        }
        pending.delete(key);
        call.result = textOf(message.content, `${param}.content`);
        return;
      }
    }
  });
  requireResults();
  // After tool results the model continues its own turn, as the template renders it.
  const last = history.at(-1);
  const continues =
    last?.type === 'model' && last.response.some((r) => typeof r === 'object' && r.type === 'functionCall');
  if (!continues) history.push({ type: 'model', response: [] });
  return history;
}
