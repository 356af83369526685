/**
 * Downloads one model file: into `<file>.part`, resumed with a Range request after a cut (in
 * this run, or the next one), checked against the size the server declared and a sha256 (pinned
 * with `#sha256=`, or published by the source as a 64-hex ETag / X-Linked-Etag), and renamed into
 * place only when complete and verified, so a half-written file is never loaded.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError, describeError } from '../../errors.ts';
import { isSha256 } from './source.ts';

export interface DownloadProgress {
  /** Bytes on disk so far (a resumed download starts above 0). */
  received: number;
  /** The file's size, when the server said. */
  total: number | undefined;
}

export interface DownloadOptions {
  url: string;
  /** The completed file's path; the partial download sits beside it as `<path>.part`. */
  path: string;
  /** Expected sha256 (hex); without it, one the source publishes is used when there is one. */
  sha256?: string;
  /** Tries after a failed or cut transfer, each resuming where the last stopped. Default 5. */
  retries?: number;
  /** A stalled transfer is abandoned (and retried) after this long without a byte. Default 60 s. */
  idleTimeoutMs?: number;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** Whether the sha256 was checked against a pinned or published value. */
  verified: boolean;
}

/** The `.part` file's sidecar: a resume is valid only against the same URL and validator. */
interface PartState {
  url: string;
  etag?: string;
  total?: number;
}

class TransferError extends Error {}

export async function downloadModel(options: DownloadOptions): Promise<DownloadResult> {
  const part = `${options.path}.part`;
  const statePath = `${part}.json`;
  await mkdir(dirname(options.path), { recursive: true });
  const retries = options.retries ?? 5;
  let lastError: unknown;
  for (let attempt = 0; attempt <= retries; attempt++) {
    options.signal?.throwIfAborted();
    try {
      const done = await transfer(options, part, statePath);
      const result = await verify(options, part, done);
      await rename(part, options.path);
      await rm(statePath, { force: true });
      return { ...result, path: options.path };
    } catch (error) {
      if (!(error instanceof TransferError)) {
        if (error instanceof ConfigError) {
          // A wrong checksum or a refused request is not retried, and leaves nothing behind.
          await rm(part, { force: true });
          await rm(statePath, { force: true });
        }
        throw error;
      }
      lastError = error;
    }
  }
  throw new ConfigError(
    `Downloading ${redact(options.url)} failed after ${retries + 1} tries (${describeError(lastError)}); run again to resume`,
    { cause: lastError },
  );
}

interface Transferred {
  total: number;
  /** The checksum the source published (ETag), if any. */
  published?: string;
}

async function transfer(options: DownloadOptions, part: string, statePath: string): Promise<Transferred> {
  const saved = await readState(statePath);
  let have = (await stat(part).catch(() => undefined))?.size ?? 0;
  if (have > 0 && saved?.url !== options.url) have = 0;
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (have > 0) {
    headers.range = `bytes=${have}-`;
    if (saved?.etag) headers['if-range'] = saved.etag;
  }
  const idle = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, idle.signal]) : idle.signal;
  let timer = setTimeout(() => idle.abort(), options.idleTimeoutMs ?? 60_000);
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(), options.idleTimeoutMs ?? 60_000);
  };
  let res: Response;
  try {
    res = await (options.fetch ?? fetch)(options.url, { headers, signal, redirect: 'follow' });
  } catch (error) {
    clearTimeout(timer);
    options.signal?.throwIfAborted();
    throw new TransferError(`the request failed (${describeError(error)})`, { cause: error });
  }
  try {
    const etag = res.headers.get('etag') ?? undefined;
    const published = publishedSha256(res.headers);
    if (res.status === 416 && have > 0 && saved?.total === have) return { total: have, published };
    let offset: number;
    let total: number | undefined;
    if (res.status === 206 && have > 0) {
      const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (!range || Number(range[1]) !== have) throw new TransferError('the server answered another range');
      offset = have;
      total = range[2] === '*' ? undefined : Number(range[2]);
    } else if (res.status === 200) {
      offset = 0; // no range support, or the file changed (If-Range): start over
      const length = res.headers.get('content-length');
      total = length === null ? undefined : Number(length);
    } else if (res.status >= 500 || res.status === 429 || res.status === 416) {
      throw new TransferError(`the server answered ${res.status}`);
    } else {
      throw new ConfigError(`Downloading ${redact(options.url)}: the server answered ${res.status}`);
    }
    await writeState(statePath, { url: options.url, etag, total });
    const file = await open(part, offset === 0 ? 'w' : 'r+');
    let received = offset;
    try {
      options.onProgress?.({ received, total });
      if (!res.body) throw new TransferError('the response has no body');
      for await (const chunk of res.body) {
        touch();
        await file.write(chunk, 0, chunk.byteLength, received);
        received += chunk.byteLength;
        if (total !== undefined && received > total)
          throw new ConfigError('the server sent more than it declared');
        options.onProgress?.({ received, total });
      }
    } catch (error) {
      if (error instanceof ConfigError || error instanceof TransferError) throw error;
      options.signal?.throwIfAborted();
      throw new TransferError(`the transfer was cut at ${received} bytes`, { cause: error });
    } finally {
      await file.close();
    }
    if (total !== undefined && received < total) {
      throw new TransferError(`the transfer ended at ${received} of ${total} bytes`);
    }
    return { total: received, published };
  } finally {
    clearTimeout(timer);
    await res.body?.cancel().catch(() => {});
  }
}

async function verify(options: DownloadOptions, part: string, done: Transferred) {
  const size = (await stat(part)).size;
  if (size !== done.total) throw new TransferError(`the file has ${size} of ${done.total} bytes`);
  const sha256 = await hashFile(part, createHash('sha256'));
  const expected = options.sha256 ?? done.published;
  if (expected !== undefined && sha256 !== expected) {
    throw new ConfigError(
      `Downloading ${redact(options.url)}: checksum mismatch (expected sha256 ${expected}, got ${sha256}); the file was deleted`,
    );
  }
  return { bytes: size, sha256, verified: expected !== undefined };
}

async function hashFile(path: string, hash: Hash): Promise<string> {
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Hugging Face publishes an LFS file's sha256 as X-Linked-Etag; plain servers may as ETag. */
function publishedSha256(headers: Headers): string | undefined {
  for (const name of ['x-linked-etag', 'etag']) {
    const value = headers.get(name)?.replace(/^W\//, '').replaceAll('"', '').toLowerCase();
    if (value && isSha256(value)) return value;
  }
  return undefined;
}

async function readState(path: string): Promise<PartState | undefined> {
  try {
    const state = JSON.parse(await readFile(path, 'utf8')) as PartState;
    return typeof state.url === 'string' ? state : undefined;
  } catch {
    return undefined;
  }
}

async function writeState(path: string, state: PartState): Promise<void> {
  await writeFile(path, JSON.stringify(state));
}

/** A URL for messages: no query string (it may carry a token). */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
