import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBundle, PROJECT_ROOT } from '../../scripts/build-bundle.ts';
import type { SecurityPostureFacts } from '../../src/hardening/types.ts';
import { baseEnv, Child, FIXTURE } from './helpers.ts';

// Output lives inside the project so the bundle resolves its external native packages
// from the project's node_modules, as dist/mesh-llm.mjs does.
let dir: string;

describe('deterministic bundle', () => {
  before(async () => {
    await mkdir(join(PROJECT_ROOT, 'dist'), { recursive: true });
    dir = await mkdtemp(join(PROJECT_ROOT, 'dist', '.bundle-test-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the same sources build to the same bytes in two directories, and the bundle measures itself', async () => {
    const a = await buildBundle({ entry: FIXTURE, outFile: join(dir, 'a', 'mesh-llm.mjs') });
    const b = await buildBundle({ entry: FIXTURE, outFile: join(dir, 'b', 'mesh-llm.mjs') });
    assert.equal(a.sha256, b.sha256);
    assert.ok(a.bytes > 1000);

    const c = new Child(a.outFile, ['posture', '--measure'], { env: baseEnv() });
    try {
      const out = await c.json<{ posture: SecurityPostureFacts; mode: string }>(60_000);
      assert.equal((await c.exited).code, 0, c.stderr);
      assert.equal(out.mode, 'bundle');
      assert.match(out.posture.binaryHash, /^[0-9a-f]{64}$/);
      if (process.platform === 'linux') assert.equal(out.posture.debuggerBlocked, true);
    } finally {
      await c.stop();
    }
  });

  it('builds the real process entry (bin/mesh-llm.js) deterministically', async () => {
    const a = await buildBundle({ outFile: join(dir, 'real-a', 'mesh-llm.mjs') });
    const b = await buildBundle({ outFile: join(dir, 'real-b', 'mesh-llm.mjs') });
    assert.equal(a.sha256, b.sha256);
    const c = new Child(a.outFile, ['--help'], { env: baseEnv() });
    try {
      assert.equal((await c.exited).code, 0, c.stderr);
      assert.match(c.stdout, /Usage: mesh-llm/);
    } finally {
      await c.stop();
    }
  });
});
