/**
 * Issue #4: a node with 100 attested peers keeps its API p50 unchanged within noise while
 * statement refreshes and liveness challenges run.
 *
 * The node under test is a real `mesh-llm serve` process serving a fast fake backend locally,
 * with a 10 s heartbeat (default 60 s): each beat it challenges every peer and gossips with it.
 * Phase A measures its API alone. Then 100 attested hosts join it (one swarm child process, see
 * lib/attested-swarm.ts) and it is measured with them re-signing their statements never (B0:
 * the cost of 100 peers alone), at the production interval of 300 s (B1), every 30 s (B2) and
 * every --refresh-ms (B3, default 5 s). Phase C measures it alone again after they left, so A and
 * C bracket B against drift. With `taskset` the swarm runs on CPU 1 and the node, the load
 * client and the backend on CPU 0, so the swarm's own work does not simply take the node's core.
 *
 *   node bench/attested-peers.ts [--quick] [--peers N] [--refresh-ms MS] [--heartbeat-ms MS]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startFakeOpenAi } from '../test/helpers/fake-openai-server.ts';
import { percentile, postJson, printTable } from './lib/load.ts';
import { cpuMsOf, type NodeProcess, spawnNode } from './lib/node-process.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    peers: { type: 'string', default: '100' },
    'refresh-ms': { type: 'string', default: '5000' },
    'heartbeat-ms': { type: 'string', default: '10000' },
  },
});
const quick = flags.quick;
const PEERS = Number(flags.peers);
const FAST_REFRESH_MS = Number(flags['refresh-ms']);
const PRODUCTION_REFRESH_MS = 300_000;
const MID_REFRESH_MS = 30_000;
const HEARTBEAT_MS = Number(flags['heartbeat-ms']);
const PHASE_MS = quick ? 8_000 : 30_000;
const MODEL = 'bench';
const body = { model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(4096) }], max_tokens: 64 };
const SWARM = fileURLToPath(new URL('lib/attested-swarm.ts', import.meta.url));

interface PeerView {
  id: string;
  attestation: { tier: string; live: boolean; verifiedAt: string } | null;
}

interface SwarmStats {
  refreshes: number;
  challengesReceived: number;
  challengesOfNodeOk: number;
  challengesOfNodeFailed: number;
}

async function attestedPeers(consoleUrl: string): Promise<PeerView[]> {
  const res = await fetch(`${consoleUrl}/api/status`);
  const { peers } = (await res.json()) as { peers: PeerView[] };
  return peers.filter((p) => p.attestation && p.attestation.tier !== 'none');
}

/**
 * Polls /api/status once a second and counts how often a peer's `verifiedAt` changed: a
 * statement verified afresh (cache hits keep the old time). A lower bound: two verifications of
 * one peer between polls count once.
 */
class StatusSampler {
  verifications = 0;
  minAttested = Number.POSITIVE_INFINITY;
  live = 0;
  readonly #consoleUrl: string;
  readonly #last = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(consoleUrl: string) {
    this.#consoleUrl = consoleUrl;
  }

  async sample(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const peers = await attestedPeers(this.#consoleUrl);
      this.minAttested = Math.min(this.minAttested, peers.length);
      this.live = peers.filter((p) => p.attestation!.live).length;
      for (const { id, attestation } of peers) {
        const last = this.#last.get(id);
        if (last !== undefined && last !== attestation!.verifiedAt) this.verifications++;
        this.#last.set(id, attestation!.verifiedAt);
      }
    } finally {
      this.#busy = false;
    }
  }

  async start(): Promise<void> {
    await this.sample(); // the baseline: changes count from here
    this.#timer = setInterval(() => void this.sample().catch(() => undefined), 1000);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.sample();
  }
}

/** The swarm child: started pinned to CPU 1 when possible, driven by line commands on stdin. */
class Swarm {
  readonly child: ChildProcess;
  readonly ready: Promise<number>;
  readonly #lines: ((line: string) => void)[] = [];
  #stderr = '';

  constructor(args: string[], pinned: boolean) {
    const command = pinned ? ['taskset', '-c', '1', process.execPath] : [process.execPath];
    this.child = spawn(command[0]!, [...command.slice(1), SWARM, ...args], { stdio: 'pipe' });
    this.child.stderr!.on('data', (d) => {
      this.#stderr = (this.#stderr + d).slice(-4000);
    });
    const lines = createInterface({ input: this.child.stdout! });
    lines.on('line', (line) => this.#lines.shift()?.(line));
    this.ready = new Promise<number>((resolve, reject) => {
      this.#lines.push((line) => resolve(Number(/swarm ready (\d+)/.exec(line)?.[1] ?? 0)));
      this.child.once('exit', (code) => reject(new Error(`swarm exited with ${code}:\n${this.#stderr}`)));
    });
  }

  stats(): Promise<SwarmStats> {
    return new Promise((resolve) => {
      this.#lines.push((line) => resolve(JSON.parse(line.replace(/^stats /, '')) as SwarmStats));
      this.child.stdin!.write('stats\n');
    });
  }

  beat(): void {
    this.child.stdin!.write('beat\n');
  }

  setRefresh(ms: number): void {
    this.child.stdin!.write(`refresh ${ms}\n`);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.kill('SIGTERM');
    });
  }
}

interface PhaseResult {
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  seconds: number;
  nodeCpu: number;
  swarmCpu?: number;
  sampler: StatusSampler;
  swarm?: SwarmStats;
}

/** Sequential non-streamed requests for PHASE_MS while the status sampler runs. */
async function phase(node: NodeProcess, swarm: Swarm | undefined): Promise<PhaseResult> {
  const url = `${node.apiUrl}/v1/chat/completions`;
  const sampler = new StatusSampler(node.consoleUrl);
  await sampler.start();
  const swarmBefore = await swarm?.stats();
  // Seconds of CPU so far: the node's (with the process it re-executed as, if any), the swarm's.
  const cpu = async () => [(await node.cpuMs()) / 1000, swarm ? (await cpuMsOf(swarm.child.pid!)) / 1000 : 0];
  const [nodeCpu0, swarmCpu0] = await cpu();
  const started = performance.now();
  const times: number[] = [];
  let errors = 0;
  while (performance.now() - started < PHASE_MS) {
    const result = await postJson(url, body).catch(() => ({ ms: 0, status: 0 }));
    if (result.status === 200) times.push(result.ms);
    else errors++;
  }
  const seconds = (performance.now() - started) / 1000;
  const [nodeCpu1, swarmCpu1] = await cpu();
  await sampler.stop();
  const swarmAfter = await swarm?.stats();
  const delta =
    swarmBefore && swarmAfter
      ? (Object.fromEntries(
          Object.entries(swarmAfter).map(([k, v]) => [k, v - swarmBefore[k as keyof SwarmStats]]),
        ) as unknown as SwarmStats)
      : undefined;
  return {
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    requests: times.length + errors,
    errors,
    seconds,
    nodeCpu: (nodeCpu1! - nodeCpu0!) / seconds,
    swarmCpu: swarm ? (swarmCpu1! - swarmCpu0!) / seconds : undefined,
    sampler,
    swarm: delta,
  };
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Pins every thread of `pid` (and the threads it creates later) to one CPU. */
function pin(pid: number, cpu: number): boolean {
  return spawnSync('taskset', ['-a', '-c', '-p', String(cpu), String(pid)], { stdio: 'ignore' }).status === 0;
}

async function main(): Promise<void> {
  const canPin = availableParallelism() >= 2 && spawnSync('taskset', ['-V']).status === 0;
  // Pinned before anything starts: the fake backend (in this process) and the node inherit CPU 0.
  const pinned = canPin && pin(process.pid, 0);
  const fake = await startFakeOpenAi({ tokens: 64, model: MODEL });
  const dataRoot = await mkdtemp(join(tmpdir(), 'mesh-llm-swarm-'));
  const started = Date.now();
  let node: NodeProcess | undefined;
  let swarm: Swarm | undefined;
  try {
    node = await spawnNode([
      ...['--backend', fake.url, '--backend-model', MODEL, '--attestation-key', 'software'],
      // The node itself re-signs at the production interval: the B rows differ in the peers' rate only.
      ...['--heartbeat-ms', String(HEARTBEAT_MS), '--attestation-refresh-ms', String(PRODUCTION_REFRESH_MS)],
    ]);
    const consoleUrl = node.consoleUrl;
    for (let i = 0; i < 50; i++) await postJson(`${node.apiUrl}/v1/chat/completions`, body); // warm-up

    const a = await phase(node, undefined);
    const rssAlone = await node.peakRssMb();

    const joinStarted = Date.now();
    swarm = new Swarm(
      [
        ...['--join', await node.token(), '--data-root', dataRoot, '--peers', String(PEERS)],
        ...['--refresh-ms', '0', '--heartbeat-ms', String(HEARTBEAT_MS)],
      ],
      pinned,
    );
    const joined = await swarm.ready;
    // Statement verified (tier above none) and answering liveness challenges.
    await waitFor(`${PEERS} attested, live peers`, 120_000, async () => {
      const peers = await attestedPeers(consoleUrl);
      return peers.filter((p) => p.attestation!.live).length >= PEERS;
    });
    const joinSeconds = (Date.now() - joinStarted) / 1000;
    // The first announcement after a peer's TOFU pin is verified once more: get that done now.
    swarm.beat();
    await new Promise((r) => setTimeout(r, 3000));

    // B0 separates the cost of 100 peers (heartbeat gossip, pings, challenges) from refreshes.
    const withPeers: [number, PhaseResult][] = [];
    for (const refreshMs of [0, PRODUCTION_REFRESH_MS, MID_REFRESH_MS, FAST_REFRESH_MS]) {
      swarm.setRefresh(refreshMs);
      withPeers.push([refreshMs, await phase(node, swarm)]);
    }
    const rssWithPeers = await node.peakRssMb();

    swarm.setRefresh(0); // let the storm end before the peers leave
    await swarm.stop();
    await waitFor('the peers to leave', 60_000, async () => (await attestedPeers(consoleUrl)).length === 0);
    const c = await phase(node, undefined);

    const perSecond = (n: number, r: PhaseResult) => `${n} (${(n / r.seconds).toFixed(1)}/s)`;
    const rate = (r: PhaseResult) => r.requests / r.seconds;
    const row = (name: string, r: PhaseResult, rss: number) => [
      name,
      r.swarm ? `${r.sampler.minAttested} / ${r.sampler.live}` : '0',
      rate(r),
      rate(r) / rate(a),
      String(r.errors),
      r.p50,
      r.p99,
      r.p50 / a.p50,
      r.swarm ? perSecond(r.swarm.refreshes, r) : '—',
      r.swarm ? perSecond(r.sampler.verifications, r) : '—',
      r.swarm ? perSecond(r.swarm.challengesReceived, r) : '—',
      r.swarm ? `${r.swarm.challengesOfNodeOk} / ${r.swarm.challengesOfNodeFailed}` : '—',
      `${(r.nodeCpu * 100).toFixed(0)}%`,
      r.swarmCpu === undefined ? '—' : `${(r.swarmCpu * 100).toFixed(0)}%`,
      rss,
    ];
    printTable(
      `Attested peers (issue #4) — API of the node under test, sequential non-streamed chat, 4 KB prompt, ` +
        `${PHASE_MS / 1000} s per phase, node heartbeat ${HEARTBEAT_MS / 1000} s (${quick ? 'quick' : 'full'} run)`,
      [
        'phase',
        'attested (min) / live peers',
        'req/s',
        'req/s / A',
        'errors',
        'p50 ms',
        'p99 ms',
        'p50 / p50(A)',
        'peer refreshes',
        'statement verifications',
        'liveness challenges by node',
        "peers' challenges of node ok / failed",
        'node CPU',
        'swarm CPU',
        'node peak RSS MB',
      ],
      [
        row('A: alone', a, rssAlone),
        ...withPeers.map(([ms, r], i) =>
          row(`B${i}: ${joined} peers, ${ms ? `refresh ${ms / 1000} s` : 'no refreshes'}`, r, rssWithPeers),
        ),
        row('C: alone again', c, await node.peakRssMb()),
      ],
    );
    process.stdout.write(
      `\n${joined} peers joined, verified and live in ${joinSeconds.toFixed(0)} s. One client sends requests ` +
        `back to back, so req/s is the node's spare capacity and p50 alone can hide a loss. Statement ` +
        `verifications: distinct verifiedAt per peer in /api/status, polled each second (a lower bound); ` +
        `liveness challenges: counted by the peers that answered them. Node CPU: its user+system time ` +
        `over wall time. Peak RSS is VmHWM (C repeats B's peak). ` +
        (pinned
          ? 'Pinned: node, client and backend on CPU 0, swarm on CPU 1.'
          : 'Not pinned (no taskset or a single CPU): the swarm shares CPUs with the node.') +
        ` Total ${((Date.now() - started) / 1000).toFixed(0)} s.\n`,
    );
  } finally {
    // Every step runs even when an earlier one fails.
    const steps = [
      () => swarm?.stop(),
      () => node?.stop(),
      () => fake.close(),
      () => rm(dataRoot, { recursive: true, force: true }),
    ];
    for (const step of steps)
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
  }
}

await main();
