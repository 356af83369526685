/**
 * Start-up cost of hardening + code measurement: `mesh-llm posture --json` with hardening
 * (core dumps, ptrace, inspector, platform facts, SHA-256 of node + app + native addons)
 * versus the internal control MESH_LLM_NO_HARDENING=1 (no hardening, no measurement).
 * Also shows the clean re-exec cost when started with an unsafe variable. Bar: ≤ 300 ms added.
 *
 *   node bench/hardening-startup.ts [--runs N]
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/mesh-llm.js', import.meta.url));
export const BAR_MS = 300;

export interface StartupBenchRow {
  scenario: string;
  medianMs: number;
  addedMs: number;
}

function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(LD_|DYLD_|NODE_OPTIONS|NODE_PATH|MESH_LLM_)/.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

function timeOnce(env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BIN, 'posture', '--json'], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`posture exited ${code}: ${stderr.slice(0, 300)}`));
      else resolve(performance.now() - t0);
    });
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export async function run(options: { runs?: number; print?: boolean } = {}): Promise<StartupBenchRow[]> {
  const runs = options.runs ?? 7;
  const scenarios: [string, NodeJS.ProcessEnv][] = [
    ['control (MESH_LLM_NO_HARDENING=1)', cleanEnv({ MESH_LLM_NO_HARDENING: '1' })],
    ['hardening + measurement', cleanEnv({})],
    ['+ clean re-exec (started with NODE_PATH)', cleanEnv({ NODE_PATH: '/nonexistent' })],
  ];
  // Warm the page cache so the first scenario is not penalised.
  await timeOnce(scenarios[1]![1]);
  const samples = new Map<string, number[]>(scenarios.map(([n]) => [n, []]));
  for (let i = 0; i < runs; i++) {
    for (const [name, env] of scenarios) samples.get(name)!.push(await timeOnce(env));
  }
  const base = median(samples.get(scenarios[0]![0])!);
  const rows = scenarios.map(([name]) => {
    const m = median(samples.get(name)!);
    return { scenario: name, medianMs: Math.round(m), addedMs: Math.round(m - base) };
  });
  if (options.print !== false) {
    const w = Math.max(...rows.map((r) => r.scenario.length));
    const lines = [
      `hardening start-up (${runs} runs each, median wall time of 'mesh-llm posture --json'; bar: ≤ ${BAR_MS} ms added)`,
      `${'scenario'.padEnd(w)}  ${'median ms'.padStart(9)}  ${'added ms'.padStart(8)}`,
      ...rows.map(
        (r) => `${r.scenario.padEnd(w)}  ${String(r.medianMs).padStart(9)}  ${String(r.addedMs).padStart(8)}`,
      ),
      `hardening + measurement added ${rows[1]!.addedMs} ms: ${rows[1]!.addedMs <= BAR_MS ? 'within' : 'OVER'} the bar`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf('--runs');
  await run({ runs: i !== -1 ? Number(process.argv[i + 1]) : undefined });
}
