/**
 * What `--model SOURCE` names: a local file, an https:// URL of a GGUF file, `hf:OWNER/REPO/FILE.gguf`
 * or `hf:OWNER/REPO:QUANT` (the repo's file of that quantization, as node-llama-cpp resolves it).
 * `#sha256=HEX` on a remote source pins the file's checksum. `hf:` goes to huggingface.co or to
 * `--model-mirror`.
 */
import { ConfigError } from '../../errors.ts';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';

export type ModelSource =
  | { kind: 'file'; path: string }
  | { kind: 'url'; url: string; fileName: string; sha256?: string; cacheKey: string }
  | { kind: 'hf-quant'; endpoint: string; repo: string; quant: string; sha256?: string };

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HEX64 = /^[0-9a-f]{64}$/;

export function isRemoteSource(source: string): boolean {
  return /^(https?:\/\/|hf:)/i.test(source);
}

/** Parses a source; `mirror` replaces the Hugging Face endpoint for `hf:` sources. */
export function parseModelSource(source: string, mirror?: string): ModelSource {
  if (!isRemoteSource(source)) return { kind: 'file', path: source };
  const hash = source.indexOf('#');
  const base = hash >= 0 ? source.slice(0, hash) : source;
  const sha256 = hash >= 0 ? parseChecksum(source.slice(hash + 1), source) : undefined;
  if (/^hf:/i.test(base)) return parseHf(base.slice(3), source, normalizeEndpoint(mirror), sha256);
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new ConfigError(`--model ${source}: not a valid URL`);
  }
  const fileName = decodeURIComponent(url.pathname.split('/').pop() ?? '');
  if (!/\.gguf$/i.test(fileName) || !SEGMENT.test(fileName)) {
    throw new ConfigError(`--model ${source}: the URL must name a .gguf file`);
  }
  return { kind: 'url', url: url.href, fileName, sha256, cacheKey: `${url.host}/${url.pathname}` };
}

function parseChecksum(fragment: string, source: string): string {
  const match = /^sha256=([0-9a-fA-F]{64})$/.exec(fragment);
  if (!match) throw new ConfigError(`--model ${source}: the fragment must be #sha256=<64 hex digits>`);
  return match[1]!.toLowerCase();
}

function normalizeEndpoint(mirror: string | undefined): string {
  const endpoint = mirror ?? DEFAULT_HF_ENDPOINT;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ConfigError(`--model-mirror must be an http(s) URL, got '${endpoint}'`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(`--model-mirror must be an http(s) URL, got '${endpoint}'`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function parseHf(rest: string, source: string, endpoint: string, sha256: string | undefined): ModelSource {
  const quant = /^([^/]+)\/([^/:]+):([^/:]+)$/.exec(rest);
  if (quant) {
    const [, owner, repo, q] = quant as unknown as [string, string, string, string];
    if (!SEGMENT.test(owner) || !SEGMENT.test(repo) || !SEGMENT.test(q)) throw hfError(source);
    return { kind: 'hf-quant', endpoint, repo: `${owner}/${repo}`, quant: q, sha256 };
  }
  const parts = rest.split('/');
  if (parts.length < 3 || !parts.every((p) => SEGMENT.test(p)) || !/\.gguf$/i.test(parts.at(-1)!)) {
    throw hfError(source);
  }
  const [owner, repo, ...file] = parts;
  return hfFile(endpoint, `${owner}/${repo}`, file.join('/'), sha256);
}

/** The download of one file of a Hugging Face repository (or a mirror with its layout). */
export function hfFile(endpoint: string, repo: string, file: string, sha256?: string): ModelSource {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return {
    kind: 'url',
    url: `${endpoint}/${repo}/resolve/main/${path}`,
    fileName: file.split('/').pop()!,
    sha256,
    cacheKey: `hf/${repo}/${file}`,
  };
}

function hfError(source: string): ConfigError {
  return new ConfigError(`--model ${source}: expected hf:OWNER/REPO/FILE.gguf or hf:OWNER/REPO:QUANT`);
}

export function isSha256(value: string): boolean {
  return HEX64.test(value);
}
