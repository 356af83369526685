import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { buildPosture, postureFromProto, postureToProto } from '../../src/hardening/posture.ts';
import type { HardeningReport, SecurityPostureFacts } from '../../src/hardening/types.ts';
import { PeerAnnouncementSchema, SecurityPostureSchema } from '../../src/proto/gen/mesh_pb.js';

const HASH = 'ab'.repeat(32);

function sampleFacts(): SecurityPostureFacts {
  return {
    platform: 'linux',
    sipEnabled: false,
    sipKnown: false,
    rdmaDisabled: true,
    rdmaKnown: true,
    secureBootEnabled: true,
    debuggerBlocked: true,
    coreDumpsDisabled: true,
    inspectorClosed: true,
    environmentClean: true,
    startedWithUnsafeEnvironment: true,
    reexecutedClean: true,
    unsafeEnvironment: ['LD_PRELOAD', 'NODE_OPTIONS'],
    ptraceScope: '1',
    binaryHash: HASH,
    plaintextBoundary: 'in-process',
    hardeningVersion: '1',
  };
}

function report(over: Partial<HardeningReport> = {}): HardeningReport {
  return {
    platform: 'linux',
    applied: true,
    steps: [
      { name: 'core-dumps-disabled', achieved: true, detail: '' },
      { name: 'debugger-blocked', achieved: false, detail: 'failed' },
      { name: 'inspector-closed', achieved: true, detail: '' },
      { name: 'environment-clean', achieved: true, detail: '' },
    ],
    environment: {
      clean: true,
      startedWithUnsafeEnvironment: false,
      reexecutedClean: false,
      unsafeNames: [],
    },
    platformFacts: {
      sipEnabled: true, // claimed but not known: must not count
      sipKnown: false,
      rdmaDisabled: true,
      rdmaKnown: true,
      secureBootEnabled: true,
      secureBootKnown: false,
      ptraceScope: 'unknown',
      details: {},
    },
    hardeningVersion: '1',
    ...over,
  };
}

describe('posture', () => {
  it('is built from measured steps only', () => {
    const p = buildPosture({
      report: report(),
      measurement: { binaryHash: HASH },
      plaintextBoundary: 'external-backend',
    });
    assert.equal(p.coreDumpsDisabled, true);
    assert.equal(p.debuggerBlocked, false);
    assert.equal(p.sipEnabled, false, 'an unknown fact is never reported true');
    assert.equal(p.secureBootEnabled, false);
    assert.equal(p.rdmaDisabled, true);
    assert.equal(p.binaryHash, HASH);
    assert.equal(p.plaintextBoundary, 'external-backend');
  });

  it('has no hash when measurement failed or is malformed', () => {
    assert.equal(buildPosture({ report: report(), plaintextBoundary: 'none' }).binaryHash, '');
    assert.equal(
      buildPosture({ report: report(), measurement: { binaryHash: 'nothex' }, plaintextBoundary: 'none' })
        .binaryHash,
      '',
    );
  });

  it('a missing step is not achieved', () => {
    const p = buildPosture({ report: report({ steps: [] }), plaintextBoundary: 'none' });
    assert.equal(p.coreDumpsDisabled || p.debuggerBlocked || p.inspectorClosed || p.environmentClean, false);
  });

  it('round-trips through the proto (field 37) and binary encoding', () => {
    const facts = sampleFacts();
    const bytes = toBinary(SecurityPostureSchema, postureToProto(facts));
    assert.deepEqual(postureFromProto(fromBinary(SecurityPostureSchema, bytes)), facts);
    const ann = create(PeerAnnouncementSchema, { version: 'x', securityPosture: postureToProto(facts) });
    const back = fromBinary(PeerAnnouncementSchema, toBinary(PeerAnnouncementSchema, ann));
    assert.ok(back.securityPosture);
    assert.deepEqual(postureFromProto(back.securityPosture), facts);
  });

  it('decodes an old peer that only sends fields 1–5 with every newer fact false/unknown', () => {
    const old = create(SecurityPostureSchema, {
      sipEnabled: true,
      rdmaDisabled: true,
      debuggerBlocked: true,
      coreDumpsDisabled: true,
      binaryHash: HASH,
    });
    const p = postureFromProto(fromBinary(SecurityPostureSchema, toBinary(SecurityPostureSchema, old)));
    assert.equal(p.debuggerBlocked, true);
    assert.equal(p.inspectorClosed, false);
    assert.equal(p.environmentClean, false);
    assert.equal(p.ptraceScope, 'unknown');
    assert.equal(p.platform, 'unknown');
    assert.equal(p.plaintextBoundary, 'external-backend');
  });

  it('normalises hostile values from a peer to their weakest reading', () => {
    const hostile = create(SecurityPostureSchema, {
      binaryHash: 'ZZ'.repeat(32),
      ptraceScope: '9; rm -rf /',
      plaintextBoundary: 'trust-me',
      platform: 'Linux\n<script>',
      unsafeEnvironment: ['LD_PRELOAD', 'bad name', 'x'.repeat(100), 'LD_PRELOAD'],
      hardeningVersion: 'v'.repeat(1000),
    });
    const p = postureFromProto(hostile);
    assert.equal(p.binaryHash, '');
    assert.equal(p.ptraceScope, 'unknown');
    assert.equal(p.plaintextBoundary, 'external-backend');
    assert.equal(p.platform, 'unknown');
    assert.deepEqual(p.unsafeEnvironment, ['LD_PRELOAD']);
    assert.equal(p.hardeningVersion.length, 16);
  });
});
