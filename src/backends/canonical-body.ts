import { InvalidRequestError } from '../errors.ts';

/**
 * The body a pass-through backend receives: re-serialized from the parsed request with the
 * model this host admitted, never the client's bytes as they came. Servers written in Go
 * (Ollama, ...) match JSON keys case-insensitively and keep the last one, so a body such as
 * `{"model":"shared","MODEL":"private"}` would run a model the host never admitted; keys that
 * differ only in case are refused at every level.
 */
export function canonicalRequestBody(body: Record<string, unknown>, model: string): Uint8Array {
  refuseCaseTwins(body, '');
  return Buffer.from(JSON.stringify({ ...body, model }));
}

function refuseCaseTwins(value: unknown, path: string): void {
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) refuseCaseTwins(item, `${path}[${i}]`);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const seen = new Map<string, string>();
  for (const [key, item] of Object.entries(value)) {
    const folded = key.toLowerCase();
    const twin = seen.get(folded);
    if (twin !== undefined) {
      const where = path === '' ? '' : ` in '${path}'`;
      throw new InvalidRequestError(
        `The keys '${twin.slice(0, 64)}' and '${key.slice(0, 64)}'${where} differ only in case`,
        'ambiguous_keys',
        path === '' ? key.slice(0, 64) : path,
      );
    }
    seen.set(folded, key);
    refuseCaseTwins(item, path === '' ? key.slice(0, 64) : `${path}.${key.slice(0, 64)}`);
  }
}
