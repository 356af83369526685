/**
 * The model cache, `<data-dir>/models/`: a remote source is downloaded once into a path derived
 * from it (`hf/OWNER/REPO/FILE.gguf`, `HOST/PATH/FILE.gguf`), with a `<file>.json` record of
 * where it came from and its sha256; a second start finds it there and makes no request.
 */
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { type DownloadProgress, downloadModel, redact } from './download.ts';
import { hfFile, type ModelSource, parseModelSource } from './source.ts';

export interface ModelStoreOptions {
  dataDir: string;
  /** Replaces https://huggingface.co for `hf:` sources (--model-mirror, MESH_LLM_MODEL_MIRROR). */
  mirror?: string;
  logger?: Logger;
  /** Progress of a download; default: none. */
  onProgress?: (name: string, progress: DownloadProgress) => void;
  fetch?: typeof fetch;
  signal?: AbortSignal;
}

export interface CachedModel {
  /** The path relative to the cache, which `models rm` takes. */
  id: string;
  path: string;
  bytes: number;
  source: string | null;
  sha256: string | null;
}

interface Record_ {
  source: string;
  url: string;
  sha256: string;
  bytes: number;
  verified: boolean;
  downloadedAt: string;
}

/** An hf:OWNER/REPO:QUANT listing is bounded: a mirror cannot make this node read a huge answer. */
const MAX_LISTING_BYTES = 4 << 20;

export function modelsDir(dataDir: string): string {
  return join(dataDir, 'models');
}

function safeSegment(segment: string): string {
  const cleaned = segment.replace(/[^A-Za-z0-9._-]/g, '_');
  return cleaned === '' || cleaned === '.' || cleaned === '..' ? '_' : cleaned;
}

function cachePath(dataDir: string, cacheKey: string): string {
  return join(modelsDir(dataDir), ...cacheKey.split('/').filter(Boolean).map(safeSegment));
}

/**
 * The local file for a source: the path itself, or the cached download (fetched first when it
 * is not cached yet). Throws ConfigError with a readable reason when it cannot be had.
 */
export async function resolveModelFile(source: string, options: ModelStoreOptions): Promise<string> {
  const parsed = parseModelSource(source, options.mirror);
  if (parsed.kind === 'file') return parsed.path;
  const file = parsed.kind === 'url' ? parsed : await resolveQuant(parsed, options);
  if (file.kind !== 'url') throw new ConfigError(`--model ${source}: cannot be resolved`);
  const path = cachePath(options.dataDir, file.cacheKey);
  const cached = await readRecord(path);
  if (cached && (file.sha256 === undefined || cached.sha256 === file.sha256)) {
    const size = (await stat(path).catch(() => undefined))?.size;
    if (size === cached.bytes) return path;
  }
  options.logger?.info({ model: file.fileName, from: redact(file.url) }, 'downloading model');
  const result = await downloadModel({
    url: file.url,
    path,
    sha256: file.sha256,
    fetch: options.fetch,
    signal: options.signal,
    onProgress: options.onProgress && ((p) => options.onProgress!(file.fileName, p)),
  });
  const record: Record_ = {
    source,
    url: redact(file.url),
    sha256: result.sha256,
    bytes: result.bytes,
    verified: result.verified,
    downloadedAt: new Date().toISOString(),
  };
  await writeFile(`${path}.json`, `${JSON.stringify(record, null, 2)}\n`);
  options.logger?.info(
    { model: file.fileName, bytes: result.bytes, sha256: result.sha256, verified: result.verified },
    'model downloaded',
  );
  return path;
}

/**
 * hf:OWNER/REPO:QUANT → the repo's GGUF file of that quantization (the cached one when there
 * is one, else from the repo listing, whose LFS sha256 then verifies the download).
 */
async function resolveQuant(
  source: Extract<ModelSource, { kind: 'hf-quant' }>,
  options: ModelStoreOptions,
): Promise<ModelSource> {
  const dir = cachePath(options.dataDir, `hf/${source.repo}`);
  const local = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.gguf'));
  const cachedName = pickQuant(local, source.quant);
  if (cachedName && (await readRecord(join(dir, cachedName)))) {
    return hfFile(source.endpoint, source.repo, cachedName, source.sha256);
  }
  const url = `${source.endpoint}/api/models/${source.repo}?blobs=true`;
  let listing: { siblings?: { rfilename?: unknown; lfs?: { sha256?: unknown } }[] };
  try {
    const res = await (options.fetch ?? fetch)(url, {
      signal: options.signal ?? AbortSignal.timeout(30_000),
    });
    if (!res.ok) throw new Error(`status ${res.status}`);
    const text = await res.text();
    if (text.length > MAX_LISTING_BYTES) throw new Error('listing too large');
    listing = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      `hf:${source.repo}:${source.quant}: could not list the repository (${String(error)})`,
    );
  }
  const files = (listing.siblings ?? []).flatMap((s) => (typeof s.rfilename === 'string' ? [s] : []));
  const name = pickQuant(
    files.map((f) => f.rfilename as string),
    source.quant,
  );
  if (!name) {
    throw new ConfigError(
      `hf:${source.repo}:${source.quant}: the repository has no single-file ${source.quant} GGUF`,
    );
  }
  const published = files.find((f) => f.rfilename === name)?.lfs?.sha256;
  return hfFile(
    source.endpoint,
    source.repo,
    name,
    source.sha256 ?? (typeof published === 'string' ? published.toLowerCase() : undefined),
  );
}

/** The GGUF named for a quantization (…-Q4_K_M.gguf, ….q4_k_m.gguf), not a split part. */
function pickQuant(files: string[], quant: string): string | undefined {
  const q = quant.toLowerCase();
  return files
    .filter((f) => {
      const name = f.toLowerCase();
      return (
        (name.endsWith(`-${q}.gguf`) || name.endsWith(`.${q}.gguf`) || name.endsWith(`_${q}.gguf`)) &&
        !/-\d{5}-of-\d{5}\.gguf$/.test(name) &&
        !name.includes('/')
      );
    })
    .sort((a, b) => a.length - b.length)[0];
}

async function readRecord(path: string): Promise<Record_ | undefined> {
  try {
    const record = JSON.parse(await readFile(`${path}.json`, 'utf8')) as Record_;
    return typeof record.sha256 === 'string' && typeof record.bytes === 'number' ? record : undefined;
  } catch {
    return undefined;
  }
}

/** Every completed model in the cache (partial downloads are not models yet). */
export async function listCachedModels(dataDir: string): Promise<CachedModel[]> {
  const root = modelsDir(dataDir);
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  const models: CachedModel[] = [];
  for (const entry of entries) {
    if (!entry.isFile() || !entry.name.endsWith('.gguf')) continue;
    const path = join(entry.parentPath, entry.name);
    const record = await readRecord(path);
    const bytes = (await stat(path)).size;
    models.push({
      id: relative(root, path).split(sep).join('/'),
      path,
      bytes,
      source: record?.source ?? null,
      sha256: record?.sha256 ?? null,
    });
  }
  return models.sort((a, b) => (a.id < b.id ? -1 : 1));
}

/** Removes a cached model (by its id from the list, or the source it was pulled as). */
export async function removeCachedModel(dataDir: string, idOrSource: string): Promise<CachedModel> {
  const models = await listCachedModels(dataDir);
  const model = models.find((m) => m.id === idOrSource || m.source === idOrSource);
  if (!model) throw new ConfigError(`no cached model '${idOrSource}' (see 'mesh-llm models list')`);
  const root = resolve(modelsDir(dataDir));
  if (!resolve(model.path).startsWith(root + sep))
    throw new ConfigError('refusing to remove outside the cache');
  for (const suffix of ['', '.json', '.part', '.part.json'])
    await rm(`${model.path}${suffix}`, { force: true });
  return model;
}
