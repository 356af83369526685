#!/usr/bin/env node
/**
 * Applies dependency-patches.mjs to node_modules (run by npm after install; safe to repeat).
 * Plain JavaScript on purpose: it runs inside `npm install`, possibly under a Node older than
 * the one the project brings.
 *
 *   node scripts/patch-dependencies.mjs           apply; warn about any patch that cannot apply
 *   node scripts/patch-dependencies.mjs --check   apply nothing; exit 1 unless all are applied
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dependencyPatches } from './dependency-patches.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** @returns {'applied' | 'patched' | string} 'applied' before, 'patched' now, else why not. */
function applyPatch(patch, write) {
  const packageDir = join(root, 'node_modules', patch.package);
  let installed;
  try {
    installed = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')).version;
  } catch {
    return `${patch.package} is not installed`;
  }
  const file = join(packageDir, patch.file);
  const source = readFileSync(file, 'utf8');
  if (patch.edits.every((edit) => source.includes(edit.replace))) return 'applied';
  const missing = patch.edits.filter((edit) => source.split(edit.find).length !== 2);
  if (missing.length > 0) {
    return `${patch.package}@${installed} (patch written for ${patch.version}): ${patch.file} no longer has the text it replaces`;
  }
  if (!write) return 'not applied';
  const patched = patch.edits.reduce((text, edit) => text.replace(edit.find, () => edit.replace), source);
  writeFileSync(file, patched);
  return 'patched';
}

const check = process.argv.includes('--check');
let failed = 0;
for (const patch of dependencyPatches) {
  const outcome = applyPatch(patch, !check);
  if (outcome === 'applied' || outcome === 'patched') {
    if (outcome === 'patched') console.log(`patched: ${patch.name}`);
    continue;
  }
  failed += 1;
  console.warn(`dependency patch not in place: ${patch.name}\n  ${outcome}`);
}
if (failed > 0) {
  if (check) process.exit(1);
  console.warn('mesh-llm works without these patches, but routed requests cost more CPU.');
}
