/**
 * `npm run check`'s dependency check: the README's folder arrows (scripts/dependency-rules.ts),
 * enforced with dependency-cruiser. dependency-cruiser cannot read TypeScript 7, so the sources
 * are first copied to a temporary tree as JavaScript (Node's type stripping) with type-only
 * imports kept as imports: a type dependency is still a dependency.
 *
 * Usage: node scripts/check-dependencies.ts [ROOT]   (ROOT holds src/; default: this checkout)
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { stripTypeScriptTypes } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise, type IModule } from 'dependency-cruiser';
import rules, { LAYERS } from './dependency-rules.ts';

export interface DependencyViolation {
  rule: string;
  from: string;
  to: string;
}

/** Type-only imports become plain imports so that stripping keeps them. */
function keepTypeImports(source: string): string {
  return source
    .replace(/\bimport\s+type\s+/g, 'import ')
    .replace(/\bexport\s+type\s*\{/g, 'export {')
    .replace(
      /\b(import|export)(\s*\{)([^}]*)(\}\s*from)/g,
      (_m, keyword: string, open: string, names: string, close: string) =>
        keyword + open + names.replace(/\btype\s+/g, '') + close,
    );
}

function toJs(path: string): string {
  return path.replace(/\.ts$/, '.js');
}

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}

/** Writes root/src as JavaScript under `out`/src; returns the top-level entries of src/. */
async function mirror(root: string, out: string): Promise<string[]> {
  const src = join(root, 'src');
  for await (const file of walk(src)) {
    if (file.endsWith('.d.ts') || !/\.(ts|js|mjs)$/.test(file)) continue;
    let text = await readFile(file, 'utf8');
    if (file.endsWith('.ts')) {
      text = stripTypeScriptTypes(keepTypeImports(text)).replace(
        /(['"])(\.{1,2}\/[^'"]+)\.ts\1/g,
        (_m, quote: string, path: string) => `${quote}${path}.js${quote}`,
      );
    }
    const target = join(out, toJs(relative(root, file)));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, text);
  }
  return (await readdir(src)).map((name) => name.replace(/\.(d\.)?[cm]?[jt]s$/, ''));
}

function folderOf(path: string): string | undefined {
  return /^src\/([^/]+)\//.exec(path)?.[1];
}

/**
 * Cycles between folders (api → routing → api through different files): dependency-cruiser
 * sees only cycles between modules, but the arrows are between folders.
 */
function folderCycles(modules: IModule[]): DependencyViolation[] {
  const edges = new Map<string, Map<string, string>>();
  for (const module of modules) {
    const from = folderOf(module.source);
    if (!from) continue;
    for (const dependency of module.dependencies) {
      const to = folderOf(dependency.resolved);
      if (!to || to === from) continue;
      const out = edges.get(from) ?? new Map<string, string>();
      if (!out.has(to)) out.set(to, `${module.source} → ${dependency.resolved}`);
      edges.set(from, out);
    }
  }
  const violations: DependencyViolation[] = [];
  for (const [from, out] of edges) {
    for (const [to, via] of out) {
      // from → to closes a cycle when `to` reaches `from` again; each pair is reported once.
      if (from < to && reaches(edges, to, from)) {
        violations.push({ rule: 'no-folder-cycle', from: `${from} ⇄ ${to}`, to: `${via}, and back` });
      }
    }
  }
  return violations.map((v) => ({ ...v, to: v.to.replace(/\.js\b/g, '.ts') }));
}

function reaches(edges: Map<string, Map<string, string>>, start: string, goal: string): boolean {
  const seen = new Set([start]);
  const queue = [start];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    if (next === goal) return true;
    for (const to of edges.get(next)?.keys() ?? []) {
      if (!seen.has(to)) {
        seen.add(to);
        queue.push(to);
      }
    }
  }
  return false;
}

export async function checkDependencies(root: string): Promise<DependencyViolation[]> {
  const out = await mkdtemp(join(tmpdir(), 'mesh-llm-deps-'));
  try {
    const placed = new Set(LAYERS.flat());
    const violations: DependencyViolation[] = [];
    for (const name of new Set(await mirror(root, out))) {
      if (!placed.has(name)) {
        violations.push({ rule: 'unplaced-folder', from: `src/${name}`, to: 'scripts/dependency-rules.ts' });
      }
    }
    const result = await cruise(['src'], { validate: true, ruleSet: rules, baseDir: out, ...rules.options });
    const output = result.output;
    if (typeof output === 'string') throw new Error('dependency-cruiser returned text, expected a result');
    for (const v of output.summary.violations) {
      const to = v.cycle ? v.cycle.map((step) => step.name).join(' → ') : v.to;
      violations.push({
        rule: v.rule.name,
        from: v.from.replace(/\.js$/, '.ts'),
        to: to.replace(/\.js\b/g, '.ts'),
      });
    }
    violations.push(...folderCycles(output.modules));
    return violations;
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  const violations = await checkDependencies(root);
  for (const v of violations) process.stderr.write(`✘ ${v.rule}: ${v.from} → ${v.to}\n`);
  if (violations.length > 0) {
    process.stderr.write(
      `${violations.length} dependency rule violation(s); see scripts/dependency-rules.ts\n`,
    );
    process.exit(1);
  }
  process.stdout.write('✔ dependency rules hold\n');
}
