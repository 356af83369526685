import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, open, readdir } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * Code measurement (SPEC §7): SHA-256 of the node executable, the application and the native
 * addons that can touch plaintext. Model weights are not hashed.
 *
 * binary_hash = SHA-256( "mesh-llm-code-measurement-v1\n" ||
 *                        for each part sorted by (role, path): role " " path " " sha256hex "\n" )
 * where `path` is a location-independent label, so the same install on two machines (or in
 * two directories) gives the same hash:
 *   node-executable  "node"
 *   application      the bundle's file name, or the path relative to the app root (src/…, bin/…)
 *   native-addon     the path relative to the node_modules directory holding it
 */
export type MeasuredRole = 'node-executable' | 'application' | 'native-addon';

export interface MeasuredPart {
  /** Location-independent label that enters the combined hash. */
  path: string;
  /** Absolute file path, for operators. Not part of the hash. */
  file: string;
  sha256: string;
  bytes: number;
  role: MeasuredRole;
}

export interface CodeMeasurement {
  binaryHash: string;
  /** 'bundle' when running from dist/mesh-llm.mjs, 'source' when running from src/. */
  mode: 'bundle' | 'source';
  parts: MeasuredPart[];
}

export interface MeasureOptions {
  /** Defaults to process.execPath. */
  execPath?: string;
  /** The running bundle file; defaults to this module's file when it is not measure.ts. */
  bundlePath?: string;
  /** Root holding src/ and bin/ (source mode) and where node_modules is searched from. */
  appRoot?: string;
  /** Overrides native addon discovery: files or directories (all files below are hashed). */
  nativeAddons?: { path: string; label: string }[];
  platform?: NodeJS.Platform;
  arch?: string;
  /**
   * Which node-llama-cpp binary this process runs (its GPU kind): that prebuilt package is
   * measured, not the CPU one. Default 'cpu'.
   */
  llamaGpu?: LlamaBinaryKind;
}

export type LlamaBinaryKind = 'cpu' | 'cuda' | 'vulkan' | 'metal';

/**
 * node-llama-cpp's prebuilt packages for a platform and GPU kind (the names its
 * getPrebuiltBinaryPath imports; CUDA ships in two packages, the second its extension).
 */
export function llamaBinaryPackages(platform: string, arch: string, gpu: LlamaBinaryKind): string[] {
  const os = platform === 'darwin' ? 'mac' : platform === 'win32' ? 'win' : platform;
  const base = `@node-llama-cpp/${os}-${arch}`;
  if (gpu === 'cuda') return [`${base}-cuda`, `${base}-cuda-ext`];
  if (gpu === 'vulkan') return [`${base}-vulkan`];
  if (gpu === 'metal') return [`${base}-metal`];
  // Apple Silicon's only binary is the Metal one; it runs on the CPU too.
  return os === 'mac' && arch === 'arm64' ? [`${base}-metal`] : [base];
}

const DOMAIN = 'mesh-llm-code-measurement-v1\n';
const CHUNK = 1 << 20;

/** Streams a file through SHA-256, reading the next chunk while hashing the current one. */
export async function sha256File(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buffers = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    let which = 0;
    let total = 0;
    let pending = fh.read(buffers[0]!, 0, CHUNK, null);
    for (;;) {
      const { bytesRead } = await pending;
      if (bytesRead === 0) break;
      const current = buffers[which]!;
      which ^= 1;
      pending = fh.read(buffers[which]!, 0, CHUNK, null);
      hash.update(current.subarray(0, bytesRead));
      total += bytesRead;
    }
    return { sha256: hash.digest('hex'), bytes: total };
  } finally {
    await fh.close();
  }
}

// Plain CommonJS so it also runs from the single-file bundle (no worker file on disk).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const fd = fs.openSync(workerData, 'r');
const buf = Buffer.allocUnsafe(${4 * CHUNK});
const hash = createHash('sha256');
let bytes = 0;
try {
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    hash.update(buf.subarray(0, n));
    bytes += n;
  }
} finally {
  fs.closeSync(fd);
}
parentPort.postMessage({ sha256: hash.digest('hex'), bytes });
`;

/** Files this large are hashed on a worker thread, in parallel with everything else. */
const WORKER_THRESHOLD = 32 * CHUNK;

/** Hashes one (large) file on a worker thread; falls back to this thread if workers fail. */
export function sha256FileInWorker(path: string): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    let worker: Worker;
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, workerData: path });
    } catch {
      sha256File(path).then(resolve, reject);
      return;
    }
    let settled = false;
    worker.once('message', (m: { sha256: string; bytes: number }) => {
      settled = true;
      resolve(m);
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`hash worker exited with code ${code}`));
    });
  });
}

/** The documented combination of parts into binary_hash. */
export function combineParts(parts: readonly Pick<MeasuredPart, 'role' | 'path' | 'sha256'>[]): string {
  const lines = parts
    .map((p) => `${p.role} ${p.path} ${p.sha256}\n`)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256')
    .update(DOMAIN + lines.join(''))
    .digest('hex');
}

/** Regular files below dir (symlinks are not followed), sorted, as absolute paths. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile()) out.push(full);
    }
  };
  await walk(dir);
  return out.sort();
}

function toLabel(from: string, file: string): string {
  return relative(from, file).split(sep).join('/');
}

/** Walks up from `start` looking for node_modules/<name>; returns its directory. */
function findPackage(start: string, name: string): string | undefined {
  let dir = resolve(start);
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The node_modules directory that holds a package directory (for labels). */
function nodeModulesOf(pkgDir: string, name: string): string {
  return resolve(pkgDir, ...name.split('/').map(() => '..'));
}

/**
 * Native code this process loads that can see plaintext: node-llama-cpp's prebuilt addon and
 * its shared libraries (the whole bins directory: ggml picks a CPU variant at run time),
 * koffi's addon and sodium-native's prebuild for this platform.
 */
async function discoverNativeAddons(
  appRoot: string,
  platform: string,
  arch: string,
  llamaGpu: LlamaBinaryKind,
): Promise<{ file: string; label: string }[]> {
  const found: { file: string; label: string }[] = [];
  const addDir = async (
    pkgDir: string | undefined,
    name: string,
    sub: string,
    filter?: (f: string) => boolean,
  ) => {
    if (!pkgDir) return;
    const root = nodeModulesOf(pkgDir, name);
    for (const file of await listFiles(join(pkgDir, sub))) {
      if (!filter || filter(file)) found.push({ file, label: toLabel(root, file) });
    }
  };
  const target = `${platform}-${arch}`;
  const llama = findPackage(appRoot, 'node-llama-cpp');
  if (llama) {
    for (const name of llamaBinaryPackages(platform, arch, llamaGpu)) {
      await addDir(findPackage(llama, name), name, 'bins');
    }
  }
  const koffi = findPackage(appRoot, 'koffi');
  if (koffi) {
    const name = `@koromix/koffi-${target}`;
    await addDir(findPackage(koffi, name), name, '.', (f) => f.endsWith('.node'));
  }
  await addDir(findPackage(appRoot, 'sodium-native'), 'sodium-native', join('prebuilds', target), (f) =>
    f.endsWith('.node'),
  );
  return found;
}

/** Measures the running code. Async and streamed; safe to call off the request path only. */
export async function measureCode(options: MeasureOptions = {}): Promise<CodeMeasurement> {
  const moduleFile = fileURLToPath(import.meta.url);
  const bundled = options.bundlePath ?? (basename(moduleFile) === 'measure.ts' ? undefined : moduleFile);
  const appRoot = resolve(
    options.appRoot ?? (bundled ? dirname(bundled) : join(dirname(moduleFile), '..', '..')),
  );
  const execPath = options.execPath ?? process.execPath;

  const targets: { file: string; label: string; role: MeasuredRole }[] = [
    { file: execPath, label: 'node', role: 'node-executable' },
  ];
  if (bundled) {
    targets.push({ file: bundled, label: basename(bundled), role: 'application' });
  } else {
    for (const dir of ['src', 'bin']) {
      for (const file of await listFiles(join(appRoot, dir))) {
        targets.push({ file, label: toLabel(appRoot, file), role: 'application' });
      }
    }
  }
  if (options.nativeAddons) {
    for (const a of options.nativeAddons) {
      const st = await lstat(a.path);
      if (st.isDirectory()) {
        for (const file of await listFiles(a.path)) {
          targets.push({ file, label: `${a.label}/${toLabel(a.path, file)}`, role: 'native-addon' });
        }
      } else {
        targets.push({ file: a.path, label: a.label, role: 'native-addon' });
      }
    }
  } else {
    const addons = await discoverNativeAddons(
      appRoot,
      options.platform ?? process.platform,
      options.arch ?? process.arch,
      options.llamaGpu ?? 'cpu',
    );
    for (const a of addons) targets.push({ ...a, role: 'native-addon' });
  }

  // Large files (the node executable) go to a worker thread; a few small files in flight
  // on this thread overlap disk reads with hashing.
  const parts: MeasuredPart[] = new Array(targets.length);
  const sizes = await Promise.all(targets.map(async (t) => (await lstat(t.file)).size));
  const big = targets.map((_, i) => i).filter((i) => sizes[i]! >= WORKER_THRESHOLD);
  const small = targets.map((_, i) => i).filter((i) => sizes[i]! < WORKER_THRESHOLD);
  const record = (i: number, r: { sha256: string; bytes: number }) => {
    const t = targets[i]!;
    parts[i] = { path: t.label, file: t.file, sha256: r.sha256, bytes: r.bytes, role: t.role };
  };
  let next = 0;
  const lane = async () => {
    while (next < small.length) {
      const i = small[next++]!;
      record(i, await sha256File(targets[i]!.file));
    }
  };
  await Promise.all([
    ...big.map(async (i) => record(i, await sha256FileInWorker(targets[i]!.file))),
    lane(),
    lane(),
    lane(),
    lane(),
  ]);
  parts.sort((a, b) => (a.role === b.role ? (a.path < b.path ? -1 : 1) : a.role < b.role ? -1 : 1));
  return { binaryHash: combineParts(parts), mode: bundled ? 'bundle' : 'source', parts };
}
