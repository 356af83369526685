/**
 * The web console's front end (built from console/ into dist/console/ by
 * scripts/build-console.ts): a fixed set of files, read once and served from memory with a
 * strict Content-Security-Policy. Nothing is served by a path the request names.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { bodyOf, type UpstreamResponse } from '../http/exchange.ts';

/** Scripts and styles only from this origin, no inline code, no framing, no other hosts. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** From src/api/ (running from source) or beside dist/mesh-llm.mjs (the bundle). */
const CANDIDATE_DIRS = [
  new URL('../../dist/console/', import.meta.url),
  new URL('./console/', import.meta.url),
];

export class ConsoleAssets {
  readonly #dirs: URL[];
  #loaded: Promise<Map<string, Buffer> | undefined> | undefined;

  constructor(dirs: URL[] = CANDIDATE_DIRS) {
    this.#dirs = dirs;
  }

  has(path: string): boolean {
    return Object.hasOwn(FILES, path);
  }

  async response(path: string): Promise<UpstreamResponse> {
    const entry = FILES[path];
    if (!entry) throw new Error(`not a console asset: ${path}`);
    this.#loaded ??= this.#load();
    const body = (await this.#loaded)?.get(entry.file);
    if (!body) {
      const text = Buffer.from(
        'The console front end is not built. Run `npm run build` (or `node scripts/build-console.ts`) in the mesh-llm folder.\n',
      );
      return { status: 503, headers: headers('text/plain; charset=utf-8', text), body: bodyOf(text) };
    }
    return { status: 200, headers: headers(entry.type, body), body: bodyOf(body) };
  }

  async #load(): Promise<Map<string, Buffer> | undefined> {
    const names = [...new Set(Object.values(FILES).map((f) => f.file))];
    for (const dir of this.#dirs) {
      try {
        const files = await Promise.all(names.map((n) => readFile(fileURLToPath(new URL(n, dir)))));
        return new Map(names.map((n, i) => [n, files[i]!]));
      } catch {
        // not built here: try the next place
      }
    }
    this.#loaded = undefined; // built later (e.g. by the tests): look again next time
    return undefined;
  }
}

function headers(type: string, body: Buffer): Record<string, string> {
  return {
    'content-type': type,
    'content-length': String(body.byteLength),
    'content-security-policy': CONSOLE_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  };
}
