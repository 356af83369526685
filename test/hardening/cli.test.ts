import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { runMeasure } from '../../src/cli/commands/measure.ts';
import { formatPosture, runPosture } from '../../src/cli/commands/posture.ts';
import { ConfigError } from '../../src/errors.ts';
import { buildPosture } from '../../src/hardening/posture.ts';
import type { HardeningReport, SecurityPostureFacts } from '../../src/hardening/types.ts';

async function capture(
  fn: (out: NodeJS.WritableStream) => Promise<number>,
): Promise<{ code: number; out: string }> {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString('utf8');
      cb();
    },
  });
  const code = await fn(sink);
  return { code, out: text };
}

const applied: HardeningReport = {
  platform: 'linux',
  applied: true,
  steps: [
    { name: 'core-dumps-disabled', achieved: true, detail: 'ok' },
    { name: 'debugger-blocked', achieved: false, detail: 'prctl refused' },
    { name: 'inspector-closed', achieved: true, detail: 'ok' },
    { name: 'environment-clean', achieved: true, detail: 'ok' },
  ],
  environment: { clean: true, startedWithUnsafeEnvironment: false, reexecutedClean: false, unsafeNames: [] },
  platformFacts: {
    sipEnabled: false,
    sipKnown: false,
    rdmaDisabled: true,
    rdmaKnown: true,
    secureBootEnabled: false,
    secureBootKnown: false,
    ptraceScope: 'unknown',
    details: {},
  },
  hardeningVersion: '1',
};

describe('posture and measure commands', () => {
  it('measure --json prints the binary hash and its parts', async () => {
    const { code, out } = await capture((o) => runMeasure(['--json'], o));
    assert.equal(code, 0);
    const m = JSON.parse(out) as { binaryHash: string; parts: { role: string }[] };
    assert.match(m.binaryHash, /^[0-9a-f]{64}$/);
    assert.ok(m.parts.some((p) => p.role === 'node-executable'));
  });

  it('posture --json reflects the report it was given and measures the code', async () => {
    const { code, out } = await capture((o) =>
      runPosture(['--json', '--backend', 'http://127.0.0.1:1'], { hardening: applied }, o),
    );
    assert.equal(code, 0);
    const o = JSON.parse(out) as { posture: SecurityPostureFacts };
    assert.equal(o.posture.debuggerBlocked, false);
    assert.equal(o.posture.coreDumpsDisabled, true);
    assert.equal(o.posture.plaintextBoundary, 'external-backend');
    assert.match(o.posture.binaryHash, /^[0-9a-f]{64}$/);
  });

  it('posture without a hardened entry claims nothing', async () => {
    const { out } = await capture((o) => runPosture(['--json', '--model', 'x.gguf'], {}, o));
    const o = JSON.parse(out) as { posture: SecurityPostureFacts };
    assert.equal(
      o.posture.debuggerBlocked || o.posture.coreDumpsDisabled || o.posture.inspectorClosed,
      false,
    );
    assert.equal(o.posture.binaryHash, '');
    assert.equal(o.posture.plaintextBoundary, 'in-process');
  });

  it('the table shows every step and says NOT achieved plainly', async () => {
    const { out } = await capture((o) => runPosture([], { hardening: applied }, o));
    for (const s of applied.steps) assert.ok(out.includes(s.name));
    assert.match(out, /debugger-blocked\s+NOT achieved\s+prctl refused/);
    const unmeasured = formatPosture({
      posture: buildPosture({ report: applied, plaintextBoundary: 'none' }),
      hardening: applied,
      measurementError: 'disk error',
    });
    assert.match(unmeasured, /binary hash\s+\(not measured: disk error\)/);
  });

  it('bad flags are user errors', async () => {
    await assert.rejects(runPosture(['--nope']), ConfigError);
    await assert.rejects(runPosture(['--model', 'a', '--backend', 'b']), ConfigError);
    await assert.rejects(runMeasure(['extra']), ConfigError);
  });
});
