import { create } from '@bufbuild/protobuf';
import { type SecurityPosture, SecurityPostureSchema } from '../proto/gen/mesh_pb.js';
import type { CodeMeasurement } from './measure.ts';
import type {
  HardeningReport,
  HardeningStepName,
  PlaintextBoundaryFact,
  PlatformFacts,
  SecurityPostureFacts,
} from './types.ts';

export interface BuildPostureInput {
  report: HardeningReport;
  /** Undefined when measurement failed or was not run: binaryHash is then ''. */
  measurement?: Pick<CodeMeasurement, 'binaryHash'>;
  plaintextBoundary: PlaintextBoundaryFact;
  /** Refreshed platform facts; defaults to the ones read at start. */
  platformFacts?: PlatformFacts;
}

function achieved(report: HardeningReport, name: HardeningStepName): boolean {
  return report.steps.some((s) => s.name === name && s.achieved === true);
}

/** The posture is assembled only from measured results: a step that failed reads false. */
export function buildPosture(input: BuildPostureInput): SecurityPostureFacts {
  const { report } = input;
  const facts = input.platformFacts ?? report.platformFacts;
  return {
    platform: report.platform,
    sipEnabled: facts.sipKnown && facts.sipEnabled,
    sipKnown: facts.sipKnown,
    rdmaDisabled: facts.rdmaKnown && facts.rdmaDisabled,
    rdmaKnown: facts.rdmaKnown,
    secureBootEnabled: facts.secureBootKnown && facts.secureBootEnabled,
    debuggerBlocked: achieved(report, 'debugger-blocked'),
    coreDumpsDisabled: achieved(report, 'core-dumps-disabled'),
    inspectorClosed: achieved(report, 'inspector-closed'),
    environmentClean: report.environment.clean && achieved(report, 'environment-clean'),
    startedWithUnsafeEnvironment: report.environment.startedWithUnsafeEnvironment,
    reexecutedClean: report.environment.reexecutedClean,
    unsafeEnvironment: [...report.environment.unsafeNames],
    ptraceScope: normalizeScope(facts.ptraceScope),
    binaryHash: normalizeHash(input.measurement?.binaryHash),
    plaintextBoundary: input.plaintextBoundary,
    hardeningVersion: report.hardeningVersion,
  };
}

export function postureToProto(facts: SecurityPostureFacts): SecurityPosture {
  return create(SecurityPostureSchema, {
    sipEnabled: facts.sipEnabled,
    rdmaDisabled: facts.rdmaDisabled,
    debuggerBlocked: facts.debuggerBlocked,
    coreDumpsDisabled: facts.coreDumpsDisabled,
    binaryHash: facts.binaryHash,
    inspectorClosed: facts.inspectorClosed,
    environmentClean: facts.environmentClean,
    startedWithUnsafeEnvironment: facts.startedWithUnsafeEnvironment,
    reexecutedClean: facts.reexecutedClean,
    secureBootEnabled: facts.secureBootEnabled,
    ptraceScope: facts.ptraceScope,
    plaintextBoundary: facts.plaintextBoundary,
    platform: facts.platform,
    unsafeEnvironment: [...facts.unsafeEnvironment],
    sipKnown: facts.sipKnown,
    rdmaKnown: facts.rdmaKnown,
    hardeningVersion: facts.hardeningVersion,
  });
}

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

function normalizeScope(value: string | undefined): string {
  return value !== undefined && /^[0-3]$/.test(value) ? value : 'unknown';
}

function normalizeHash(value: string | undefined): string {
  return value !== undefined && /^[0-9a-f]{64}$/.test(value) ? value : '';
}

function normalizeBoundary(value: string): PlaintextBoundaryFact {
  if (value === 'in-process' || value === 'external-backend' || value === 'none') return value;
  // An unrecognised claim is treated as the weakest host boundary.
  return 'external-backend';
}

/**
 * Decodes a peer's posture. The input is untrusted: malformed values are normalised to
 * their weakest reading (no hash, unknown scope, external backend) rather than trusted.
 * Old peers that only send fields 1–5 decode with every newer fact false/unknown.
 */
export function postureFromProto(proto: SecurityPosture): SecurityPostureFacts {
  const platform = /^[a-z0-9_-]{1,32}$/.test(proto.platform) ? proto.platform : 'unknown';
  return {
    platform,
    sipEnabled: proto.sipEnabled,
    sipKnown: proto.sipKnown,
    rdmaDisabled: proto.rdmaDisabled,
    rdmaKnown: proto.rdmaKnown,
    secureBootEnabled: proto.secureBootEnabled,
    debuggerBlocked: proto.debuggerBlocked,
    coreDumpsDisabled: proto.coreDumpsDisabled,
    inspectorClosed: proto.inspectorClosed,
    environmentClean: proto.environmentClean,
    startedWithUnsafeEnvironment: proto.startedWithUnsafeEnvironment,
    reexecutedClean: proto.reexecutedClean,
    unsafeEnvironment: [...new Set(proto.unsafeEnvironment.filter((n) => NAME_RE.test(n)))]
      .sort()
      .slice(0, 64),
    ptraceScope: normalizeScope(proto.ptraceScope),
    binaryHash: normalizeHash(proto.binaryHash),
    plaintextBoundary: normalizeBoundary(proto.plaintextBoundary),
    hardeningVersion: proto.hardeningVersion.slice(0, 16),
  };
}
