import { request } from 'node:http';
import { readAll } from '../../src/http/exchange.ts';
import type { ByteStream } from '../../src/mesh/types.ts';

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One HTTP request with full control of the headers (fetch will not send a foreign Host). */
export function rawRequest(
  url: string,
  options: {
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string;
    /** Give up (reject) after this long; default never. */
    timeoutMs?: number;
  },
): Promise<RawAnswer> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path,
        headers: options.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.timeoutMs !== undefined) {
      req.setTimeout(options.timeoutMs, () =>
        req.destroy(new Error(`no complete answer within ${options.timeoutMs} ms`)),
      );
    }
    req.end(options.body);
  });
}

/** A chat completion request body for `model`. */
export function chatBody(model: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });
}

/**
 * A hostile host's /mesh-llm/http handler (plaintext peer): reads the request, then answers
 * whatever `answer` writes on the stream.
 */
export function hostileHttpHandler(answer: (stream: ByteStream) => Promise<void>) {
  return async (stream: ByteStream): Promise<void> => {
    await readAll(stream.source);
    await answer(stream);
  };
}
