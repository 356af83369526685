/** A recorded-style chat completions SSE stream (llama-server shape) and stream helpers. */
import type { TranslationContext } from '../../src/api/responses-translation.ts';

export const DELTAS = ['Héllo', ', ', 'wörld', ' 🌍', ' 你好', '!'];

function chunk(delta: Record<string, unknown>, finish: string | null = null): string {
  return JSON.stringify({
    id: 'chatcmpl-abc',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model: 'tiny',
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
}

/** Builds a chat SSE body. `terminate: false` drops the final [DONE] (truncated stream). */
export function chatSse(
  options: { deltas?: string[]; finish?: string; terminate?: boolean; crlf?: boolean } = {},
): string {
  const deltas = options.deltas ?? DELTAS;
  const nl = options.crlf ? '\r\n' : '\n';
  const events = [
    ': keep-alive comment',
    `data: ${chunk({ role: 'assistant', content: '' })}`,
    ...deltas.map((d) => `data: ${chunk({ content: d })}`),
    `data: ${chunk({}, options.finish ?? 'stop')}`,
    `data: ${JSON.stringify({
      id: 'chatcmpl-abc',
      object: 'chat.completion.chunk',
      created: 1_700_000_000,
      model: 'tiny',
      choices: [],
      usage: { prompt_tokens: 7, completion_tokens: deltas.length, total_tokens: 7 + deltas.length },
    })}`,
  ];
  if (options.terminate !== false) events.push('data: [DONE]');
  return events.map((e) => `${e}${nl}${nl}`).join('');
}

export async function* chunks(...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield part;
}

/** Splits bytes into pieces at the given offsets. */
export function splitAt(bytes: Uint8Array, offsets: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (const offset of [...offsets, bytes.length]) {
    out.push(bytes.subarray(start, offset));
    start = offset;
  }
  return out;
}

export async function collect(source: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const part of source) parts.push(part);
  return Buffer.concat(parts).toString('utf8');
}

export function deterministicContext(): Required<TranslationContext> {
  let n = 0;
  return { now: () => 1_700_000_123_000, newId: (prefix) => `${prefix}_${++n}` };
}

/** Parses translated Responses SSE text into [{event, data}]. */
export function parseEvents(text: string): Array<{ event: string; data: Record<string, unknown> }> {
  return text
    .split('\n\n')
    .filter((block) => block.length > 0)
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? '';
      const data = JSON.parse(
        lines
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n'),
      );
      return { event, data };
    });
}
