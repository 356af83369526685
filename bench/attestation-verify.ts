// Attestation verification cost: node bench/attestation-verify.ts [iterations]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { answerChallenge, verifyChallengeAnswer } from '../src/attestation/liveness.ts';
import { PinStore } from '../src/attestation/pins.ts';
import { SoftwareKeyProvider } from '../src/attestation/providers/software.ts';
import { buildStatement, encodeStatement, parseStatement } from '../src/attestation/statement.ts';
import { AttestationVerifierCache, verifyAttestation } from '../src/attestation/verify.ts';
import { silentLogger } from '../src/log.ts';
import { sampleFacts } from '../test/attestation/helpers.ts';

export interface BenchRow {
  operation: string;
  iterations: number;
  'µs/op': number;
  'ops/s': number;
}

async function measure(operation: string, iterations: number, fn: () => unknown): Promise<BenchRow> {
  for (let i = 0; i < Math.min(50, iterations); i++) await fn(); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) await fn();
  const micros = Number(process.hrtime.bigint() - start) / 1000 / iterations;
  return { operation, iterations, 'µs/op': Number(micros.toFixed(1)), 'ops/s': Math.round(1e6 / micros) };
}

export async function run(options: { iterations?: number } = {}): Promise<BenchRow[]> {
  const iterations = options.iterations ?? 2000;
  const dataDir = await mkdtemp(join(tmpdir(), 'mesh-llm-bench-att-'));
  try {
    const provider = await SoftwareKeyProvider.open({ dataDir, logger: silentLogger() });
    const now = Date.now();
    const endpoint = 'ab'.repeat(32);
    const inferenceKey = Buffer.alloc(32, 1).toString('base64');
    const facts = sampleFacts({ nodeEndpointId: endpoint, inferencePublicKey: inferenceKey, nowMs: now });
    const blob = encodeStatement(await buildStatement(facts, provider));
    const pins = await PinStore.open({ dataDir });
    const policy = { minimumTier: 'self-signed' as const, requiredPosture: {} };
    const input = { blob, peerEndpointId: endpoint, announcedInferenceKey: inferenceKey, now, policy, pins };
    await verifyAttestation(input); // pins once, so the loop measures the steady state
    const cache = new AttestationVerifierCache({ policy, pins, clock: () => now });
    const nonce = new Uint8Array(32).fill(3);
    const keyB64 = Buffer.from(provider.publicKey()).toString('base64');
    const answer = await answerChallenge(provider, nonce);
    const rows = [
      await measure('parseStatement', iterations, () => parseStatement(blob)),
      await measure('verifyAttestation (uncached)', iterations, () => verifyAttestation(input)),
      await measure('AttestationVerifierCache hit', iterations, () => cache.verify(input)),
      await measure('buildStatement (software key)', Math.ceil(iterations / 4), () =>
        buildStatement(facts, provider),
      ),
      await measure('verifyChallengeAnswer', iterations, () => verifyChallengeAnswer(keyB64, nonce, answer)),
    ];
    cache.close();
    return rows;
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Alias for a bench runner that collects every area's rows. */
export const runAttestationBench = run;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick');
  const iterations = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? (quick ? 500 : 2000));
  console.table(await run({ iterations }));
}
