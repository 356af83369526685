/** The mesh as an SVG: this node in the middle, peers around it, links drawn by kind. */
import { s } from './dom.ts';
import { machine, peerName } from './format.ts';
import { LINK_TEXT, type Link, type LinkKind, linkOf, roleOf } from './model.ts';
import type { Status } from './types.ts';

const W = 760;
/** Vertical room per node: the disc above its centre, name, role, machine and models below. */
const ROW = 150;

interface Placed {
  id: string;
  name: string;
  role: string;
  models: string[];
  tier: string;
  machine?: string;
  x: number;
  y: number;
  self: boolean;
  link?: Link;
}

function modelNames(models: unknown[] | undefined): string[] {
  return (models ?? [])
    .map((m) =>
      typeof m === 'string'
        ? m
        : m && typeof m === 'object'
          ? String((m as { name?: unknown }).name ?? '')
          : '',
    )
    .filter((m) => m !== '');
}

const ORDER: Record<LinkKind, number> = { direct: 0, relayed: 1, transitive: 2, offline: 3 };

export function renderTopology(status: Status): SVGElement {
  let H = 300;
  const node = status.node ?? {};
  const peers = [...(status.peers ?? [])].sort(
    (a, b) => ORDER[linkOf(a).kind] - ORDER[linkOf(b).kind] || String(a.id).localeCompare(String(b.id)),
  );
  const self: Placed = {
    id: node.id ?? 'self',
    name: node.name ?? 'this node',
    role: node.role ?? 'node',
    models: (node.models ?? [])
      .filter((m) => (m.hosts ?? []).includes('local'))
      .map((m) => String(m.name ?? '')),
    tier: node.attestation?.keyStorage ? 'self' : 'none',
    x: 0,
    y: 0,
    self: true,
  };
  // Layers, left to right: this node, the peers it reaches directly, the peers behind them
  // (relayed through a shown relay, or known by gossip only).
  const links = peers.map((p) => linkOf(p));
  const ids = new Set(peers.map((p) => p.id));
  const names = new Map(peers.map((p) => [peerName(p), p.id]));
  const layerOf = (i: number): number => {
    const link = links[i]!;
    if (link.kind === 'transitive') return 2;
    if (link.kind === 'relayed' && link.via && (ids.has(link.via) || names.has(link.via))) return 2;
    return 1;
  };
  const layers: number[][] = [[], [], []];
  for (let i = 0; i < peers.length; i++) layers[layerOf(i)]!.push(i);
  if (layers[1]!.length === 0 && layers[2]!.length > 0) layers.splice(1, 1);
  const used = layers.filter((l, i) => i === 0 || l.length > 0).length;
  const rows = Math.max(1, ...layers.map((l) => l.length));
  H = Math.max(320, rows * ROW + 40);
  const columnX = (layer: number) => (used <= 1 ? W / 2 : 110 + ((W - 220) * layer) / Math.max(1, used - 1));
  self.x = columnX(0);
  self.y = H / 2 - 24;
  const placed: Placed[] = [];
  layers.forEach((members, layer) => {
    members.forEach((index, row) => {
      const p = peers[index]!;
      placed.push({
        id: p.id ?? `peer-${index}`,
        name: peerName(p),
        role: roleOf(p, peers),
        models: modelNames(p.models),
        tier: p.attestation?.tier ?? 'none',
        machine: machine(p.hardware),
        x: columnX(layer),
        y: (H - members.length * ROW) / 2 + ROW * (row + 0.5) - 24,
        self: false,
        link: links[index],
      });
    });
  });
  const byId = new Map(placed.map((p) => [p.id, p]));
  const byName = new Map(placed.map((p) => [p.name, p]));

  const edges = s('g', { class: 'edges' });
  for (const p of placed) {
    const link = p.link!;
    const relay = link.via ? (byId.get(link.via) ?? byName.get(link.via)) : undefined;
    const from = link.kind === 'relayed' && relay ? relay : self;
    const d = curve(from, p);
    const title = `${p.name}: ${link.kind}${link.via ? ` via ${relay?.name ?? link.via}` : ''}${link.address ? ` · ${link.address}` : ''}. ${LINK_TEXT[link.kind]}`;
    edges.append(
      s(
        'path',
        { class: `edge edge-${link.kind}`, d, 'data-peer': p.id, 'data-link': link.kind },
        s('title', {}, title),
      ),
    );
    if (link.kind === 'direct' || link.kind === 'relayed')
      edges.append(s('path', { class: `flow flow-${link.kind}`, d }));
    const mid = midpoint(from, p);
    const label =
      link.kind === 'relayed'
        ? relay
          ? `relayed via ${relay.name}`
          : 'relayed'
        : link.kind === 'direct'
          ? 'direct'
          : link.kind;
    edges.append(
      s(
        'text',
        { class: `edge-label edge-label-${link.kind}`, x: mid.x, y: mid.y - 6, 'text-anchor': 'middle' },
        label,
      ),
    );
  }

  const nodes = s('g', { class: 'nodes' });
  for (const p of [self, ...placed]) nodes.append(nodeGlyph(p));

  return s(
    'svg',
    {
      viewBox: `0 0 ${W} ${H}`,
      class: 'topology',
      height: H,
      role: 'img',
      'aria-label': `Mesh topology: ${placed.length + 1} nodes`,
    },
    s(
      'defs',
      {},
      s(
        'radialGradient',
        { id: 'glow' },
        s('stop', { offset: '0%', 'stop-color': '#7c9cff', 'stop-opacity': 0.35 }),
        s('stop', { offset: '100%', 'stop-color': '#7c9cff', 'stop-opacity': 0 }),
      ),
    ),
    edges,
    nodes,
  );
}

function nodeGlyph(p: Placed): SVGElement {
  const r = p.self ? 30 : 24;
  const g = s('g', {
    class: `node role-${safeClass(p.role)} tier-${safeClass(p.tier)}${p.self ? ' self' : ''}`,
    transform: `translate(${p.x.toFixed(1)} ${p.y.toFixed(1)})`,
    'data-id': p.id,
    'data-link': p.link?.kind ?? 'self',
  });
  if (p.self) g.append(s('circle', { r: r + 26, fill: 'url(#glow)' }));
  g.append(s('circle', { class: 'ring', r: r + 4 }));
  g.append(s('circle', { class: 'disc', r }));
  g.append(s('text', { class: 'glyph', 'text-anchor': 'middle', dy: '0.35em' }, roleGlyph(p.role)));
  const name = p.name.length > 22 ? `${p.name.slice(0, 21)}…` : p.name;
  g.append(
    s('text', { class: 'node-name', y: r + 20, 'text-anchor': 'middle' }, name, s('title', {}, p.name)),
  );
  g.append(
    s(
      'text',
      { class: 'node-role', y: r + 34, 'text-anchor': 'middle' },
      p.self ? `${p.role} · this node` : p.role,
    ),
  );
  const top = p.machine ? r + 48 : r + 38;
  if (p.machine) g.append(s('text', { class: 'node-hw', y: r + 47, 'text-anchor': 'middle' }, p.machine));
  const shown = p.models.slice(0, 3);
  shown.forEach((m, i) => {
    const label = m.length > 18 ? `${m.slice(0, 17)}…` : m;
    const width = 14 + label.length * 6.4;
    const y = top + 4 + i * 20;
    g.append(s('rect', { class: 'model-pill', x: -width / 2, y, width, height: 16, rx: 8 }));
    g.append(
      s('text', { class: 'model-pill-text', y: y + 11.5, 'text-anchor': 'middle' }, label, s('title', {}, m)),
    );
  });
  if (p.models.length > shown.length) {
    g.append(
      s(
        'text',
        { class: 'node-role', y: top + 4 + shown.length * 20 + 11, 'text-anchor': 'middle' },
        `+${p.models.length - shown.length} more`,
      ),
    );
  }
  return g;
}

function roleGlyph(role: string): string {
  switch (role) {
    case 'host':
      return '◆';
    case 'relay':
      return '⇄';
    case 'client':
      return '○';
    default:
      return '●';
  }
}

function safeClass(v: string): string {
  return v.replace(/[^a-z0-9-]/gi, '').slice(0, 24) || 'x';
}

function midpoint(a: { x: number; y: number }, b: { x: number; y: number }) {
  const c = control(a, b);
  return { x: 0.25 * a.x + 0.5 * c.x + 0.25 * b.x, y: 0.25 * a.y + 0.5 * c.y + 0.25 * b.y };
}

/** A gentle bow so parallel links (self→relay, relay→peer) stay apart. */
function control(a: { x: number; y: number }, b: { x: number; y: number }) {
  const mx = (a.x + b.x) / 2;
  const my = (a.y + b.y) / 2;
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy) || 1;
  const bow = Math.min(40, len * 0.12);
  return { x: mx - (dy / len) * bow, y: my + (dx / len) * bow };
}

function curve(a: { x: number; y: number }, b: { x: number; y: number }): string {
  const c = control(a, b);
  return `M ${a.x.toFixed(1)} ${a.y.toFixed(1)} Q ${c.x.toFixed(1)} ${c.y.toFixed(1)} ${b.x.toFixed(1)} ${b.y.toFixed(1)}`;
}
