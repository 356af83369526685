/**
 * Builds the web console (console/: TypeScript + CSS + one HTML page) into dist/console/, which
 * the node serves on its console port. Runs after `npm install` (postinstall), in `npm run build`
 * and before the tests; the same sources give the same bytes (no source maps, no timestamps).
 *
 *   node scripts/build-console.ts [--out DIR] [--optional]
 *
 * --optional (postinstall): without esbuild (an install that omits dev dependencies) say so and
 * succeed; the node then answers the console page with a 503 that says how to build it.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CONSOLE_OUT_DIR = join(ROOT, 'dist', 'console');

export async function buildConsole(outDir = CONSOLE_OUT_DIR): Promise<string> {
  const { build } = await import('esbuild');
  await mkdir(outDir, { recursive: true });
  await build({
    absWorkingDir: ROOT,
    entryPoints: { app: join(ROOT, 'console', 'src', 'main.ts'), style: join(ROOT, 'console', 'style.css') },
    outdir: outDir,
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: ['chrome110', 'firefox110', 'safari16'],
    minify: true,
    legalComments: 'none',
    sourcemap: false,
    charset: 'utf8',
    logLevel: 'warning',
  });
  await copyFile(join(ROOT, 'console', 'index.html'), join(outDir, 'index.html'));
  return outDir;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--out');
  const optional = process.argv.includes('--optional');
  if (
    optional &&
    !(await import('esbuild').then(
      () => true,
      () => false,
    ))
  ) {
    process.stdout.write(
      'esbuild is not installed: the web console is not built (npm run build builds it)\n',
    );
  } else {
    const out = await buildConsole(i !== -1 ? resolve(process.argv[i + 1]!) : undefined);
    process.stdout.write(`console built in ${out}\n`);
  }
}
