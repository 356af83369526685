/**
 * Builds the single-file application bundle dist/mesh-llm.mjs from the process entry
 * (bin/mesh-llm.js: hardening first, then the CLI). Deterministic: the same sources and
 * lockfile give byte-identical output (no timestamps, no source maps, no legal comments,
 * paths in comments relative to the project root), so its hash can go on an allowlist.
 * Packages with native parts stay external and are measured separately as native addons.
 *
 *   node scripts/build-bundle.ts [--out FILE]
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Packages that load native code (or resolve it by path at run time). */
export const NATIVE_EXTERNALS = [
  'node-llama-cpp',
  '@node-llama-cpp/*',
  'koffi',
  '@koromix/*',
  'sodium-native',
  'require-addon',
  '@reflink/*',
];

// Bundled CommonJS dependencies call require(); ESM output needs one in scope.
const BANNER =
  "import { createRequire as __meshLlmCreateRequire } from 'node:module';\n" +
  'const require = __meshLlmCreateRequire(import.meta.url);';

export interface BuildBundleOptions {
  /** Output file; default dist/mesh-llm.mjs under the project root. */
  outFile?: string;
  /** Entry point; default bin/mesh-llm.js. */
  entry?: string;
  projectRoot?: string;
}

export async function buildBundle(
  options: BuildBundleOptions = {},
): Promise<{ outFile: string; sha256: string; bytes: number }> {
  const root = options.projectRoot ?? PROJECT_ROOT;
  const outFile = resolve(root, options.outFile ?? join('dist', 'mesh-llm.mjs'));
  const entry = options.entry ?? join(root, 'bin', 'mesh-llm.js');
  await build({
    absWorkingDir: root,
    entryPoints: [isAbsolute(entry) ? entry : join(root, entry)],
    outfile: outFile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    external: NATIVE_EXTERNALS,
    banner: { js: BANNER },
    legalComments: 'none',
    sourcemap: false,
    minify: false,
    charset: 'utf8',
    logLevel: 'warning',
    write: true,
  });
  const bytes = await readFile(outFile);
  return { outFile, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--out');
  const outFile = i !== -1 ? process.argv[i + 1] : undefined;
  const result = await buildBundle({ outFile: outFile && resolve(outFile) });
  process.stdout.write(`${result.outFile}  ${result.bytes} bytes  sha256 ${result.sha256}\n`);
}
