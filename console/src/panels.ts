/** The console's panels: KPIs, peers and their security, models and load, this node. */
import { h, s } from './dom.ts';
import { ago, bytes, DASH, machine, ms, peerName, plural, present, rate, shortId, text } from './format.ts';
import {
  type Badge,
  displayHost,
  LEGEND,
  LINK_TEXT,
  linkOf,
  PLAINTEXT_TEXT,
  peerBadges,
  roleOf,
} from './model.ts';
import { lifetimeRates, type TrafficTracker } from './traffic.ts';
import type { HostingStatus, ModelPool, ModelStatus, NodeStatus, Peer, Status } from './types.ts';

export function badge(b: Pick<Badge, 'label' | 'tone' | 'title'> & { key?: string }): HTMLElement {
  return h('span', { class: `badge ${b.tone}`, title: b.title, 'data-badge': b.key }, b.label);
}

function sparkline(values: number[]): SVGElement {
  const w = 120;
  const hgt = 28;
  const max = Math.max(1e-9, ...values);
  const pts = values.map(
    (v, i) =>
      `${((i / Math.max(1, values.length - 1)) * w).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`,
  );
  return s(
    'svg',
    { class: 'spark', viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none' },
    values.length > 1 ? s('polyline', { points: pts.join(' ') }) : null,
  );
}

function kpi(id: string, label: string, value: string, sub: string, spark?: number[]): HTMLElement {
  return h(
    'div',
    { class: 'kpi', id },
    h('div', { class: 'kpi-label' }, label),
    h('div', { class: 'kpi-value' }, value),
    h('div', { class: 'kpi-sub' }, sub),
    spark ? sparkline(spark) : null,
  );
}

export function renderKpis(status: Status, traffic: TrafficTracker): HTMLElement[] {
  const peers = status.peers ?? [];
  const kinds = { direct: 0, relayed: 0, transitive: 0, offline: 0 };
  for (const p of peers) kinds[linkOf(p).kind]++;
  const t = traffic.totals;
  const life = [...traffic.lifetime.values()];
  const served = life.reduce((n, m) => n + m.requests, 0);
  return [
    kpi(
      'kpi-rate',
      'Requests / min',
      rate(t.requestsPerMin),
      `${served} served since start`,
      traffic.history.map((x) => x.requestsPerMin),
    ),
    kpi('kpi-latency', 'Latency', ms(t.latencyS), `first token ${ms(t.ttftS)}`),
    kpi(
      'kpi-tps',
      'Tokens / s',
      rate(t.tokensPerS),
      'per stream, while generating',
      traffic.history.map((x) => x.tokensPerS),
    ),
    kpi(
      'kpi-peers',
      'Peers',
      String(peers.length),
      `${kinds.direct} direct · ${kinds.relayed} relayed · ${kinds.transitive} transitive`,
    ),
    kpi(
      'kpi-models',
      'Models',
      String(status.node?.models?.length ?? 0),
      plural(new Set((status.node?.models ?? []).flatMap((m) => m.hosts ?? [])).size, 'host'),
    ),
  ];
}

export function renderPeers(status: Status): HTMLElement {
  const peers = [...(status.peers ?? [])].sort((a, b) => peerName(a).localeCompare(peerName(b)));
  if (peers.length === 0)
    return h(
      'p',
      { class: 'empty' },
      'No peers yet. Share the invite token (`mesh-llm status`) to grow the mesh.',
    );
  const rows = peers.map((p) => {
    const link = linkOf(p);
    const via = link.via ? peers.find((x) => x.id === link.via) : undefined;
    return h(
      'tr',
      { 'data-peer': p.id },
      h(
        'td',
        null,
        h('div', { class: 'peer-name' }, peerName(p)),
        h('code', { class: 'muted', title: p.id }, shortId(p.id)),
      ),
      h(
        'td',
        null,
        h('span', { class: `role role-${roleOf(p, peers)}` }, roleOf(p, peers)),
        machine(p.hardware) ? h('div', { class: 'muted small hw' }, machine(p.hardware)) : null,
      ),
      h(
        'td',
        null,
        h(
          'span',
          { class: `link link-${link.kind}`, title: LINK_TEXT[link.kind], 'data-link': link.kind },
          link.kind,
        ),
        link.via
          ? h('div', { class: 'muted small' }, `via ${via ? peerName(via) : shortId(link.via)}`)
          : null,
        link.address ? h('div', { class: 'muted small mono' }, link.address) : null,
        typeof p.rttMs === 'number'
          ? h('div', { class: 'muted small' }, `${Math.round(p.rttMs)} ms rtt`)
          : null,
      ),
      h('td', { class: 'wrap' }, modelList(p.models)),
      h('td', { class: 'badges' }, peerBadges(p).map(badge)),
      h(
        'td',
        { class: 'muted' },
        text(p.version),
        h(
          'div',
          { class: 'small' },
          p.attestation?.verifiedAt ? `verified ${ago(p.attestation.verifiedAt)}` : '',
        ),
      ),
    );
  });
  return h(
    'table',
    { class: 'peers' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['Peer', 'Role', 'Link', 'Models', 'Security', 'Version'].map((c) => h('th', null, c)),
      ),
    ),
    h('tbody', null, rows),
  );
}

function modelList(models: unknown[] | undefined): (HTMLElement | string)[] {
  const names = (models ?? [])
    .map((m) => (typeof m === 'string' ? m : String((m as { name?: unknown })?.name ?? '')))
    .filter(Boolean);
  return names.length === 0 ? [DASH] : names.map((n) => h('span', { class: 'pill' }, n));
}

export function renderLegend(): HTMLElement {
  return h(
    'div',
    { class: 'legend' },
    LEGEND.map((l) =>
      h(
        'div',
        { class: 'legend-row' },
        badge({ label: l.label, tone: l.tone, title: l.text }),
        h('span', null, l.text),
      ),
    ),
  );
}

export function renderModels(status: Status, traffic: TrafficTracker): HTMLElement {
  const models = status.node?.models ?? [];
  if (models.length === 0) return h('p', { class: 'empty' }, 'No model is served in this mesh yet.');
  const peers = status.peers ?? [];
  const self = status.node?.name ?? 'this node';
  const pools = new Map((status.models ?? []).map((p) => [String(p.name ?? ''), p]));
  return h(
    'table',
    { class: 'models' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['Model', 'Hosts and load', 'Req/min', 'Latency', 'TTFT', 'Tokens/s'].map((c) => h('th', null, c)),
      ),
    ),
    h(
      'tbody',
      null,
      models.map((m: ModelStatus) => {
        const name = String(m.name ?? '');
        const live = traffic.perModel.get(name);
        const life = lifetimeRates(traffic.lifetime.get(name));
        const pool = pools.get(name);
        return h(
          'tr',
          { 'data-model': name },
          h(
            'td',
            null,
            h('div', { class: 'peer-name' }, name),
            present(m.contextLength) ? h('div', { class: 'muted small' }, `ctx ${m.contextLength}`) : null,
            pool?.waiting
              ? h('div', { class: 'small warn-text' }, `${pool.waiting} waiting for a slot`)
              : null,
          ),
          h('td', { class: 'hosts' }, hostLoads(m, pool, peers, self)),
          h('td', { class: 'num' }, rate(live?.requestsPerMin ?? 0)),
          h('td', { class: 'num' }, ms(live?.latencyS ?? life.latencyS)),
          h('td', { class: 'num' }, ms(live?.ttftS ?? life.ttftS)),
          h('td', { class: 'num' }, rate(live?.tokensPerS ?? life.tokensPerS)),
        );
      }),
    ),
  );
}

/** One line per host: its name, a slot meter, and what pooling reports (in flight, queued, served/min). */
function hostLoads(m: ModelStatus, pool: ModelPool | undefined, peers: Peer[], self: string): HTMLElement[] {
  const hosts: NonNullable<ModelPool['hosts']> =
    pool?.hosts ?? (m.hosts ?? []).map((id) => ({ id: String(id) }));
  return hosts.map((host) => {
    const slots = typeof host.slots === 'number' && host.slots > 0 ? host.slots : undefined;
    const busy = host.inFlight ?? 0;
    const pct = slots ? Math.min(100, Math.round((busy / slots) * 100)) : 0;
    const facts = [
      slots !== undefined ? `${busy}/${slots} slots` : host.inFlight !== undefined ? `${busy} in flight` : '',
      host.queued ? `${host.queued} queued` : '',
      typeof host.servedPerMinute === 'number' ? `${rate(host.servedPerMinute)}/min` : '',
    ].filter(Boolean);
    return h(
      'div',
      { class: 'host-load', 'data-host': host.id },
      h('span', { class: 'pill' }, displayHost(String(host.id ?? ''), peers, self)),
      slots !== undefined
        ? h(
            'span',
            { class: 'meter', title: `${busy} of ${slots} slots busy` },
            h('span', { class: `meter-fill p${Math.round(pct / 10) * 10}${pct >= 100 ? ' full' : ''}` }),
          )
        : null,
      h('span', { class: 'muted small' }, facts.join(' · ')),
    );
  });
}

export function renderNode(node: NodeStatus | undefined): HTMLElement {
  const n = node ?? {};
  const p = n.posture ?? {};
  const row = (label: string, ...value: (Node | string | null)[]) => [
    h('dt', null, label),
    h('dd', null, ...value),
  ];
  const flag = (label: string, v: boolean | null | undefined) =>
    badge({
      label: `${v ? '✓' : v === false ? '✗' : '?'} ${label}`,
      tone: v ? 'ok' : v === false ? 'bad' : 'muted',
      title: label,
    });
  return h(
    'dl',
    { class: 'facts' },
    row('Endpoint', h('code', { title: n.id }, shortId(n.id))),
    row('Version', text(n.version)),
    row(
      'Addresses',
      ...(n.addresses?.length ? n.addresses.map((a) => h('div', { class: 'mono small' }, a)) : [DASH]),
    ),
    row(
      'Policy',
      badge({
        label: n.policy?.requireEncryption ? 'requires E2E' : 'E2E preferred',
        tone: n.policy?.requireEncryption ? 'ok' : 'muted',
        title: 'Whether this node refuses hosts without an inference key',
      }),
      badge({
        label: n.policy?.requireAttestedHosts ? 'requires attested hosts' : 'attestation not enforced',
        tone: n.policy?.requireAttestedHosts ? 'ok' : 'muted',
        title: 'Whether this node refuses hosts below its attestation policy',
      }),
    ),
    row(
      'E2E',
      n.e2e?.enabled
        ? badge({ label: 'inference key active', tone: 'ok', title: text(n.e2e.inferencePublicKey) })
        : badge({ label: 'off', tone: 'warn', title: 'This node neither seals nor opens E2E requests' }),
    ),
    row(
      'Attestation',
      n.attestation?.keyStorage
        ? `${n.attestation.keyStorage} key ${text(n.attestation.keyFingerprint).slice(0, 16)}`
        : 'no statement (serves no model)',
    ),
    row(
      'Posture',
      flag('debugger blocked', p.debuggerBlocked),
      flag('core dumps off', p.coreDumpsDisabled),
      flag('inspector closed', p.inspectorClosed),
      flag('env clean', p.environmentClean),
    ),
    row('Plaintext', PLAINTEXT_TEXT[p.plaintextBoundary ?? ''] ?? text(p.plaintextBoundary)),
    n.hosting ? row('Hosting', ...hostingFacts(n.hosting)) : null,
    row(
      'Invite token',
      n.token
        ? tokenBox(n.token)
        : h(
            'span',
            { class: 'muted' },
            'Hidden from the browser: run `mesh-llm status` as the node’s user to see it.',
          ),
    ),
  );
}

function hostingFacts(hosting: HostingStatus): (HTMLElement | string)[] {
  const gpu = hosting.gpu;
  const out: (HTMLElement | string)[] = [
    h(
      'div',
      null,
      gpu?.kind && gpu.kind !== 'cpu'
        ? `${gpu.names?.join(', ') || gpu.kind} · ${bytes(gpu.vramBytes)} VRAM`
        : `CPU · ${plural(hosting.cpuCores ?? 0, 'core')} · ${bytes(hosting.memoryBytes)}`,
      gpu?.fallbackReason ? h('div', { class: 'muted small' }, `on the CPU: ${gpu.fallbackReason}`) : null,
    ),
  ];
  for (const m of hosting.models ?? []) {
    const offload =
      typeof m.gpuLayers === 'number' && typeof m.layerCount === 'number' && m.layerCount > 0
        ? `${m.gpuLayers}/${m.layerCount} layers on the GPU`
        : (m.backend ?? '');
    out.push(
      h(
        'div',
        { class: 'small' },
        h('span', { class: 'pill' }, text(m.name)),
        badge({
          label: m.ready ? 'ready' : 'loading',
          tone: m.ready ? 'ok' : 'warn',
          title: 'Whether the model answers requests yet',
        }),
        h('span', { class: 'muted' }, offload),
      ),
    );
  }
  for (const r of hosting.refused ?? []) {
    out.push(
      h(
        'div',
        { class: 'small' },
        badge({ label: `not loaded: ${text(r.name)}`, tone: 'bad', title: text(r.reason) }),
        h('span', { class: 'muted' }, text(r.reason)),
      ),
    );
  }
  return out;
}

function tokenBox(token: string): HTMLElement {
  const code = h('code', { class: 'token' }, token);
  const copy = h('button', { type: 'button', class: 'ghost' }, 'Copy');
  copy.addEventListener('click', () => {
    void navigator.clipboard?.writeText(token).then(() => {
      copy.textContent = 'Copied';
      setTimeout(() => {
        copy.textContent = 'Copy';
      }, 1500);
    });
  });
  return h('div', { class: 'token-row' }, code, copy);
}
