import { ConfigError } from '../../errors.ts';
import { notHardenedReport } from '../../hardening/harden.ts';
import { type CodeMeasurement, measureCode } from '../../hardening/measure.ts';
import { buildPosture } from '../../hardening/posture.ts';
import type { HardeningReport, PlaintextBoundaryFact, SecurityPostureFacts } from '../../hardening/types.ts';
import { parseFlags, rejectPositionals } from '../args.ts';
import type { CliContext } from '../context.ts';

const HELP = `mesh-llm posture [flags]

Shows what runtime hardening achieved in this process and the measured security posture a
node started the same way would announce (SPEC §7).

  --json               machine-readable output
  --model PATH         report the plaintext boundary of an in-process (GGUF) host
  --backend URL        report the plaintext boundary of a pass-through backend host
  --allow-unsafe-env   do not re-execute when started with LD_PRELOAD/NODE_OPTIONS (posture says so)`;

const FLAGS = {
  json: { type: 'boolean' },
  model: { type: 'string' },
  backend: { type: 'string' },
  'allow-unsafe-env': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface PostureOutput {
  posture: SecurityPostureFacts;
  hardening: HardeningReport;
  measurement?: CodeMeasurement;
  measurementError?: string;
}

/** Gathers the posture output; measurement is skipped for an unhardened control run. */
export async function collectPosture(
  report: HardeningReport,
  plaintextBoundary: PlaintextBoundaryFact,
): Promise<PostureOutput> {
  let measurement: CodeMeasurement | undefined;
  let measurementError: string | undefined;
  if (report.applied) {
    try {
      measurement = await measureCode();
    } catch (err) {
      measurementError = (err as Error).message;
    }
  } else {
    measurementError = 'not measured: hardening was not applied in this process';
  }
  const posture = buildPosture({ report, measurement, plaintextBoundary });
  return { posture, hardening: report, measurement, measurementError };
}

export async function runPosture(
  args: string[],
  context: CliContext = {},
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS);
  if (values.help) {
    out.write(`${HELP}\n`);
    return 0;
  }
  rejectPositionals(positionals);
  if (values.model && values.backend) throw new ConfigError('use either --model or --backend, not both');
  const boundary: PlaintextBoundaryFact = values.model
    ? 'in-process'
    : values.backend
      ? 'external-backend'
      : 'none';
  const report =
    context.hardening ?? notHardenedReport('not run: the CLI was called without the process entry');
  const result = await collectPosture(report, boundary);
  if (values.json) {
    const { measurement, ...rest } = result;
    const json = {
      ...rest,
      measurement: measurement && {
        binaryHash: measurement.binaryHash,
        mode: measurement.mode,
        parts: measurement.parts,
      },
    };
    out.write(`${JSON.stringify(json, null, 2)}\n`);
    return 0;
  }
  out.write(formatPosture(result));
  return 0;
}

function yesNo(v: boolean): string {
  return v ? 'yes' : 'no';
}

function table(rows: [string, string, string?][]): string {
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  return rows
    .map(([a, b, c]) => `  ${a.padEnd(w0)}  ${b.padEnd(w1)}${c ? `  ${c}` : ''}`.trimEnd())
    .join('\n');
}

export function formatPosture(out: PostureOutput): string {
  const p = out.posture;
  const f = out.hardening.platformFacts;
  const d = f.details;
  const steps = table(
    out.hardening.steps.map((s) => [s.name, s.achieved ? 'achieved' : 'NOT achieved', s.detail]),
  );
  const facts = table([
    ['platform', p.platform],
    ['debugger blocked', yesNo(p.debuggerBlocked)],
    ['core dumps disabled', yesNo(p.coreDumpsDisabled)],
    ['inspector closed', yesNo(p.inspectorClosed)],
    ['environment clean', yesNo(p.environmentClean)],
    ['started with unsafe env', yesNo(p.startedWithUnsafeEnvironment), p.unsafeEnvironment.join(', ')],
    ['re-executed clean', yesNo(p.reexecutedClean)],
    ['SIP enabled', p.sipKnown ? yesNo(p.sipEnabled) : 'unknown', d.sip],
    ['RDMA disabled', p.rdmaKnown ? yesNo(p.rdmaDisabled) : 'unknown', d.rdma],
    ['secure boot enabled', f.secureBootKnown ? yesNo(p.secureBootEnabled) : 'unknown', d.secureBoot],
    ['Yama ptrace_scope', p.ptraceScope, d.ptraceScope],
    ['plaintext boundary', p.plaintextBoundary],
    ['hardening version', p.hardeningVersion],
  ]);
  const hash = p.binaryHash || `(not measured${out.measurementError ? `: ${out.measurementError}` : ''})`;
  return `Hardening steps\n${steps}\n\nSecurity posture\n${facts}\n  binary hash  ${hash}\n`;
}
