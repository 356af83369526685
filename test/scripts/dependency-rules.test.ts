import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkDependencies } from '../../scripts/check-dependencies.ts';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A throwaway src/ tree: file path → source. */
async function tree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), `mesh-llm-deps-fixture-${process.pid}-`));
  for (const [path, source] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), source);
  }
  return root;
}

describe('dependency rules (npm run check)', () => {
  const roots: string[] = [];
  after(async () => {
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });
  const fixture = async (files: Record<string, string>) => {
    const root = await tree(files);
    roots.push(root);
    return checkDependencies(root);
  };

  it('hold on this checkout', async () => {
    assert.deepEqual(await checkDependencies(repo), []);
  });

  it('accept imports that point down the layers', async () => {
    const violations = await fixture({
      'src/api/a.ts': "import { x } from '../openai/x.ts';\nexport const a: number = x;\n",
      'src/openai/x.ts': "import { e } from '../errors.ts';\nexport const x = e;\n",
      'src/errors.ts': 'export const e = 1;\n',
    });
    assert.deepEqual(violations, []);
  });

  it('refuse a lower layer importing a higher one, type-only imports included', async () => {
    const violations = await fixture({
      'src/crypto/seal.ts': "import type { Router } from '../routing/router.ts';\nexport type R = Router;\n",
      'src/routing/router.ts': 'export interface Router { id: string }\n',
      'src/encoding/hex.ts': "import { VERSION } from '../node/version.ts';\nexport const v = VERSION;\n",
      'src/node/version.ts': "export const VERSION = '1';\n",
    });
    // Rules are named after the layer they guard (layer-encoding-errors-log, layer-openai-crypto-…).
    assert.deepEqual(violations.map((v) => [v.rule.replace(/^(layer-[a-z]+)-.*/, '$1'), v.from]).sort(), [
      ['layer-encoding', 'src/encoding/hex.ts'],
      ['layer-openai', 'src/crypto/seal.ts'],
    ]);
  });

  it('refuse cycles between folders and between modules', async () => {
    const violations = await fixture({
      'src/api/routes.ts': "import { r } from '../routing/router.ts';\nexport const a = r;\n",
      'src/routing/router.ts': 'export const r = 1;\n',
      'src/routing/inbound.ts': "import { a } from '../api/routes.ts';\nexport const i = a;\n",
      'src/cli/main.ts': "import { c } from './cmd.ts';\nexport const m = c;\n",
      'src/cli/cmd.ts': "import type { m } from './main.ts';\nexport const c = 1 as typeof m;\n",
    });
    const rules = violations.map((v) => v.rule).sort();
    assert.deepEqual(rules, ['no-circular', 'no-folder-cycle']);
  });

  it('keep crypto and attestation free of HTTP and libp2p', async () => {
    const violations = await fixture({
      'src/attestation/verify.ts':
        "import { createServer } from 'node:http';\nexport const s = createServer;\n",
      'src/crypto/keys.ts': "import { createLibp2p } from 'libp2p';\nexport const l = createLibp2p;\n",
    });
    assert.deepEqual(violations.map((v) => [v.rule, v.from]).sort(), [
      ['pure-crypto-attestation', 'src/attestation/verify.ts'],
      ['pure-crypto-attestation', 'src/crypto/keys.ts'],
    ]);
  });

  it('refuse a new top-level folder until it is given a layer', async () => {
    const violations = await fixture({ 'src/plugins/x.ts': 'export const x = 1;\n' });
    assert.deepEqual(
      violations.map((v) => [v.rule, v.from]),
      [['unplaced-folder', 'src/plugins']],
    );
  });
});
