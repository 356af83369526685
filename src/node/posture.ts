import { describeError } from '../errors.ts';
import { notHardenedReport } from '../hardening/harden.ts';
import { type CodeMeasurement, type LlamaBinaryKind, measureCode } from '../hardening/measure.ts';
import { buildPosture } from '../hardening/posture.ts';
import type { HardeningReport, SecurityPostureFacts } from '../hardening/types.ts';
import type { Logger } from '../log.ts';

const measurements = new Map<LlamaBinaryKind, Promise<CodeMeasurement | undefined>>();

/**
 * This process's posture: what hardening achieved (or an all-false report when the process
 * was not started through the hardened entry, e.g. in-process tests) plus the code
 * measurement, taken once per process (and llama.cpp binary). The node fills in the plaintext
 * boundary.
 */
export async function currentPosture(
  report: HardeningReport | undefined,
  logger: Logger,
  /** The node-llama-cpp binary this process loaded (its GPU kind), measured instead of the CPU one. */
  llamaGpu: LlamaBinaryKind = 'cpu',
): Promise<SecurityPostureFacts> {
  let measurement = measurements.get(llamaGpu);
  if (!measurement) {
    measurement = measureCode({ llamaGpu }).catch((error) => {
      logger.warn({ err: describeError(error) }, 'code measurement failed; binary_hash will be empty');
      return undefined;
    });
    measurements.set(llamaGpu, measurement);
  }
  const hardening = report ?? notHardenedReport('not started through the hardened entry (bin/mesh-llm.js)');
  const posture = buildPosture({
    report: hardening,
    measurement: await measurement,
    plaintextBoundary: 'none',
  });
  logger.info(
    {
      debuggerBlocked: posture.debuggerBlocked,
      coreDumpsDisabled: posture.coreDumpsDisabled,
      inspectorClosed: posture.inspectorClosed,
      environmentClean: posture.environmentClean,
      secureBoot: posture.secureBootEnabled,
      binaryHash: posture.binaryHash.slice(0, 16),
    },
    'security posture',
  );
  return posture;
}
