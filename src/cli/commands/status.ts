import { resolve } from 'node:path';
import { ConfigError } from '../../errors.ts';
import { DEFAULT_CONSOLE_PORT, defaultDataDir } from '../../node/config.ts';
import { readConsoleCredential } from '../../node/console-credential.ts';
import type { StatusReport } from '../../node/status.ts';
import { parseFlags, portFlag } from '../args.ts';

const FLAGS = {
  console: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The console credential of the node whose data dir is `--data-dir` (default ~/.mesh-llm). */
export function consoleCredentialFor(dataDir: string | undefined): Promise<string> {
  return readConsoleCredential(dataDir ? resolve(dataDir) : defaultDataDir());
}

export async function fetchStatus(consolePort: number, credential?: string): Promise<StatusReport> {
  let response: Response;
  try {
    response = await fetch(`http://127.0.0.1:${consolePort}/api/status`, {
      headers: credential ? { authorization: `Bearer ${credential}` } : {},
      signal: AbortSignal.timeout(5000),
    });
  } catch {
    throw new ConfigError(
      `no node is answering on console port ${consolePort} — start one with 'mesh-llm serve', or pass --console PORT`,
    );
  }
  if (!response.ok) throw new ConfigError(`the console on port ${consolePort} answered ${response.status}`);
  return (await response.json()) as StatusReport;
}

function short(id: string): string {
  return id.slice(0, 12);
}

function cell(value: unknown): string {
  return value === null || value === undefined || value === '' ? '—' : String(value);
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** The GPU, memory and per-model offload of a hosting node; nothing on a client. */
function hostingLines(hosting: StatusReport['node']['hosting']): string[] {
  if (!hosting) return [];
  const gpu = hosting.gpu;
  const accelerator = !gpu
    ? 'no in-process models'
    : gpu.kind === 'cpu'
      ? `cpu (--gpu ${gpu.requested}${gpu.fallbackReason ? `: ${gpu.fallbackReason}` : ''})`
      : `${gpu.kind} ${gpu.names.join(', ') || '?'} vram=${gib(gpu.vramBytes)}`;
  const models = hosting.models.map((m) =>
    m.layerCount === null
      ? `${m.name}(${m.backend})`
      : `${m.name}(${m.gpuLayers}/${m.layerCount} layers on gpu)`,
  );
  return [
    `gpu    ${accelerator}   memory=${gib(hosting.memoryBytes)} cores=${hosting.cpuCores}`,
    `hosts  ${models.join('  ') || '—'}`,
    ...hosting.refused.map((r) => `refused ${r.name}: ${r.reason}`),
  ];
}

/** `direct ADDR`, `relayed via RELAY`, or `transitive` (known through gossip, not connected). */
function linkCell(link: StatusReport['peers'][number]['link'] | undefined): string {
  if (link === undefined || link.kind === 'transitive') return 'transitive';
  if (link.kind === 'relayed') return `relayed via ${link.via === null ? '?' : short(link.via)}`;
  return `direct ${link.address ?? ''}`.trim();
}

export function formatStatus(report: StatusReport): string {
  const n = report.node;
  const lines = [
    `node   ${n.name} (${short(n.id)})  role=${n.role}  version=${n.version}  mesh=${n.meshId}`,
    `e2e    ${n.e2e.enabled ? 'on' : 'off'}   attestation key: ${cell(n.attestation.keyStorage)} ${cell(n.attestation.keyFingerprint)}`,
    `policy require-encryption=${n.policy.requireEncryption} require-attested-hosts=${n.policy.requireAttestedHosts}`,
    `posture debugger-blocked=${n.posture.debuggerBlocked} core-dumps-off=${n.posture.coreDumpsDisabled} plaintext=${n.posture.plaintextBoundary} hash=${n.posture.binaryHash.slice(0, 16)}`,
    ...hostingLines(n.hosting),
    ...(n.reachability ? [`reach  ${n.reachability}`] : []),
    `models ${n.models.map((m) => `${m.name}@${m.hosts.map((h) => (h === 'local' ? 'local' : short(h))).join(',')}`).join('  ') || '—'}`,
    '',
  ];
  const header = [
    'peer',
    'name',
    'role',
    'models',
    'link',
    'rtt',
    'hardware',
    'e2e',
    'tier',
    'key',
    'pinned',
    'live',
    'verified',
    'reason',
  ];
  const rows = report.peers.map((p) => [
    short(p.id) + (p.connected ? '' : p.transitive ? ' (via mesh)' : ' (offline)'),
    p.name,
    p.role,
    p.models.join(',') || '—',
    linkCell(p.link),
    p.rttMs === null ? '—' : `${Math.round(p.rttMs)}ms`,
    p.hardware
      ? `${p.hardware.gpuKind || 'cpu'}${p.hardware.vramBytes > 0 ? ` ${gib(p.hardware.vramBytes)}` : ''} ${gib(p.hardware.memoryBytes)} ${p.hardware.cpuCores}c`
      : '—',
    p.e2e.capable ? 'yes' : 'no',
    cell(p.attestation?.tier ?? 'none'),
    cell(p.attestation?.keyStorage),
    cell(p.attestation?.pinned),
    cell(p.attestation?.live),
    cell(p.attestation?.verifiedAt),
    cell(p.attestation?.failureReason ?? (p.policy?.refused ? `refused: ${p.policy.reason}` : null)),
  ]);
  const peers = rows.length === 0 ? 'no peers yet\n' : table(header, rows);
  return `${lines.join('\n')}${peers}${formatPools(report.models ?? [])}`;
}

/** Per model: each host's slots and load as this node sees them (pooling). */
export function formatPools(pools: StatusReport['models']): string {
  if (pools.length === 0) return '';
  const header = ['model', 'host', 'slots', 'in flight', 'queued', 'served/min'];
  const rows: string[][] = [];
  for (const pool of pools) {
    const name = pool.waiting > 0 ? `${pool.name} (${pool.waiting} waiting here)` : pool.name;
    for (const [i, h] of pool.hosts.entries()) {
      rows.push([
        i === 0 ? name : '',
        h.id === 'local' ? 'local' : short(h.id),
        cell(h.slots),
        String(h.inFlight),
        String(h.queued),
        cell(h.servedPerMinute),
      ]);
    }
  }
  return `\n${table(header, rows)}`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (row: string[]) =>
    row
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return `${[format(header), ...rows.map(format)].join('\n')}\n`;
}

export async function runStatus(args: string[]): Promise<number> {
  const { values } = parseFlags(args, FLAGS);
  if (values.help) {
    process.stdout.write('mesh-llm status [--console PORT] [--data-dir DIR] [--json]\n');
    return 0;
  }
  // Without the credential (another user) the status still shows, minus the invite token.
  const credential = await consoleCredentialFor(values['data-dir']).catch(() => undefined);
  const report = await fetchStatus(portFlag(values.console, '--console', DEFAULT_CONSOLE_PORT), credential);
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
  return 0;
}
