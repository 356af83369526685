/** The mesh-llm console: polls this node's status and traffic and renders the mesh. */
import { fill, h } from './dom.ts';
import { renderKpis, renderLegend, renderModels, renderNode, renderPeers } from './panels.ts';
import { createPlayground } from './playground.ts';
import { renderTopology } from './topology.ts';
import { TrafficTracker } from './traffic.ts';
import type { Status, Traffic } from './types.ts';

const POLL_MS = 2000;

function card(
  id: string,
  title: string,
  sub: string,
  ...body: HTMLElement[]
): { el: HTMLElement; body: HTMLElement } {
  const content = h('div', { class: 'card-body', id: `${id}-body` }, ...body);
  return {
    el: h(
      'section',
      { class: `card ${id}`, id },
      h('header', null, h('h2', null, title), h('span', { class: 'card-sub' }, sub)),
      content,
    ),
    body: content,
  };
}

function start(): void {
  const app = document.getElementById('app')!;
  const state = h('span', { id: 'state', class: 'state' }, 'connecting…');
  const nodeName = h('span', { class: 'node-title', id: 'node-title' });
  const kpis = h('div', { class: 'kpis', id: 'kpis' });
  const topology = card('topology', 'Mesh topology', 'who is connected, how, and what they serve');
  const playground = createPlayground();
  const play = card('playground', 'Playground', 'streams through this node', playground.element);
  const peersTable = h('div', { id: 'peers-table' });
  const peers = card(
    'peers',
    'Peers & security',
    'hover a badge for what it proves',
    peersTable,
    h(
      'details',
      { class: 'legend-box', open: '' },
      h('summary', null, 'What the badges mean'),
      renderLegend(),
    ),
  );
  const models = card('models', 'Models & load', 'hosts and live traffic through this node');
  const self = card('self', 'This node', '');
  fill(
    app,
    h(
      'header',
      { class: 'top' },
      h('div', { class: 'brand' }, h('span', { class: 'logo' }, '◈'), 'mesh-llm'),
      nodeName,
      state,
    ),
    h(
      'main',
      null,
      kpis,
      h('div', { class: 'row two' }, topology.el, play.el),
      peers.el,
      h('div', { class: 'row two' }, models.el, self.el),
    ),
  );

  const traffic = new TrafficTracker();
  let lastOk = 0;

  async function poll(): Promise<void> {
    try {
      const [statusRes, trafficRes] = await Promise.all([
        fetch('/api/status', { cache: 'no-store', headers: { accept: 'application/json' } }),
        fetch('/api/traffic', { cache: 'no-store', headers: { accept: 'application/json' } }),
      ]);
      if (!statusRes.ok) throw new Error(`HTTP ${statusRes.status}`);
      const status = (await statusRes.json()) as Status;
      if (trafficRes.ok) traffic.update((await trafficRes.json()) as Traffic);
      render(status);
      lastOk = Date.now();
      state.className = 'state ok';
      state.textContent = `live · ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      state.className = 'state bad';
      state.textContent = `cannot reach the node (${(error as Error).message})${lastOk ? ` · last update ${new Date(lastOk).toLocaleTimeString()}` : ''}`;
    } finally {
      setTimeout(() => void poll(), POLL_MS);
    }
  }

  function render(status: Status): void {
    const n = status.node ?? {};
    fill(
      nodeName,
      h('strong', null, n.name ?? 'node'),
      h('span', { class: `role role-${n.role ?? 'node'}` }, n.role ?? ''),
      h('span', { class: 'muted' }, n.version ? `v${n.version}` : ''),
    );
    fill(kpis, renderKpis(status, traffic));
    fill(topology.body, renderTopology(status), topologyKey());
    fill(peersTable, renderPeers(status));
    fill(models.body, renderModels(status, traffic));
    fill(self.body, renderNode(status.node));
    playground.update(status);
  }

  void poll();
}

function topologyKey(): HTMLElement {
  const item = (cls: string, label: string) =>
    h('span', { class: 'key-item' }, h('span', { class: `key-line ${cls}` }), label);
  return h(
    'div',
    { class: 'topology-key' },
    item('edge-direct', 'direct'),
    item('edge-relayed', 'relayed'),
    item('edge-transitive', 'transitive (gossip)'),
    h('span', { class: 'key-item' }, h('span', { class: 'key-dot role-host' }), 'host'),
    h('span', { class: 'key-item' }, h('span', { class: 'key-dot role-relay' }), 'relay'),
    h('span', { class: 'key-item' }, h('span', { class: 'key-dot role-client' }), 'client'),
  );
}

start();
