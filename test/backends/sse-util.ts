/** Test helpers for reading backend responses. */
import { readAll, type UpstreamResponse } from '../../src/http/exchange.ts';
import { type OpenAiRequest, parseOpenAiRequest } from '../../src/openai/request.ts';

/** Parsed JSON in tests: assertions check the shape, so loose typing is the point. */
// biome-ignore lint/suspicious/noExplicitAny: parsed JSON under test
export type Obj = Record<string, any>;

/** A request as a backend receives it: validated by the OpenAI rules (`model` defaults to 'tiny'). */
export function request(path: string, body: Record<string, unknown>, method = 'POST'): OpenAiRequest {
  return parseOpenAiRequest(method, path, Buffer.from(JSON.stringify({ model: 'tiny', ...body })));
}

export async function json(res: UpstreamResponse): Promise<Obj> {
  return JSON.parse((await readAll(res.body)).toString('utf8'));
}

export interface SseResult {
  /** Parsed `data:` payloads, in order, excluding [DONE]. */
  events: Obj[];
  done: boolean;
  /** Number of body chunks the stream arrived in. */
  bodyChunks: number;
}

/** Reads a whole SSE body; asserts nothing follows `data: [DONE]`. */
export async function readSse(
  body: AsyncIterable<Uint8Array>,
  limit = Number.POSITIVE_INFINITY,
): Promise<SseResult> {
  let text = '';
  let bodyChunks = 0;
  for await (const chunk of body) {
    bodyChunks++;
    text += Buffer.from(chunk).toString('utf8');
    if (bodyChunks >= limit) break;
  }
  return { ...parseSse(text), bodyChunks };
}

export function parseSse(text: string): { events: Obj[]; done: boolean } {
  const events: Obj[] = [];
  let done = false;
  for (const block of text.split('\n\n')) {
    const line = block.trim();
    if (!line) continue;
    if (!line.startsWith('data: ')) throw new Error(`unexpected SSE line: ${line.slice(0, 40)}`);
    const data = line.slice(6);
    if (done) throw new Error('data after [DONE]');
    if (data === '[DONE]') done = true;
    else events.push(JSON.parse(data));
  }
  return { events, done };
}
