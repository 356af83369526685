import { Agent, request } from 'node:http';

const agent = new Agent({ keepAlive: true, maxSockets: 512 });

export interface Timed {
  ms: number;
  status: number;
}

/** One POST through a keep-alive agent; resolves when the whole body has arrived. */
export function postJson(
  url: string,
  body: unknown,
  onChunk?: (chunk: Buffer, elapsedMs: number) => void,
): Promise<Timed> {
  const payload = Buffer.from(JSON.stringify(body));
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        res.on('data', (chunk: Buffer) => onChunk?.(chunk, performance.now() - started));
        res.on('end', () => resolve({ ms: performance.now() - started, status: res.statusCode ?? 0 }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Sequential non-streamed requests: p50/p99 latency. */
export async function latency(url: string, body: unknown, count: number) {
  const times: number[] = [];
  let errors = 0;
  for (let i = 0; i < count; i++) {
    const result = await postJson(url, body).catch(() => ({ ms: 0, status: 0 }));
    if (result.status === 200) times.push(result.ms);
    else errors++;
  }
  return { p50: percentile(times, 50), p99: percentile(times, 99), errors, times };
}

/** Sequential streamed requests: the time to the first content chunk of each. */
export async function timesToFirstToken(url: string, body: unknown, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    let first: number | undefined;
    await postJson(url, body, (chunk, elapsed) => {
      if (first === undefined && chunk.includes('"content"')) first = elapsed;
    });
    if (first !== undefined) times.push(first);
  }
  return times;
}

/** `concurrency` streams at once, `rounds` times: aggregate SSE content tokens per second. */
export async function streamThroughput(url: string, body: unknown, concurrency: number, rounds = 1) {
  let tokens = 0;
  let errors = 0;
  const started = performance.now();
  for (let round = 0; round < rounds; round++) {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        let text = '';
        try {
          const result = await postJson(url, body, (chunk) => {
            text += chunk.toString('utf8');
          });
          if (result.status !== 200 || !text.includes('[DONE]')) errors++;
          tokens += text.split('"content":"').length - 1;
        } catch {
          errors++;
        }
      }),
    );
  }
  const seconds = (performance.now() - started) / 1000;
  return { tokensPerSecond: tokens / seconds, tokens, seconds, errors };
}

export function printTable(title: string, header: string[], rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? format(c) : c)));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  process.stdout.write(`\n${title}\n${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|\n`);
  for (const r of cells) process.stdout.write(`${line(r)}\n`);
}

function format(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(2);
}
