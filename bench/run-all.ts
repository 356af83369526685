/**
 * Runs every benchmark one after another (never concurrently: they would skew each other on a
 * small machine), each printing its own table. Pass --quick for shorter runs.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const scripts = [
  'mesh-routing.ts',
  'e2e-streaming.ts',
  'crypto-throughput.ts',
  'noise-cipher.ts',
  'attestation-verify.ts',
  'attested-peers.ts',
  'hardening-startup.ts',
  'lab-latency.ts',
  'load-wire.ts',
  'pooling.ts',
  'affinity-ttft.ts',
  'agent-api.ts',
  'llama-loop-overhead.ts',
];
const extra = process.argv.slice(2);
let failed = 0;
for (const script of scripts) {
  const path = fileURLToPath(new URL(script, import.meta.url));
  const result = spawnSync(process.execPath, [path, ...extra], { stdio: 'inherit' });
  if (result.status !== 0) failed++;
}
process.exitCode = failed === 0 ? 0 : 1;
