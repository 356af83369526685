import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import vm from 'node:vm';
import { CONSOLE_CSP, CONSOLE_HEADERS, CONSOLE_HTML } from '../../src/api/console-page.ts';

const SCRIPT = /<script>([\s\S]*)<\/script>/.exec(CONSOLE_HTML)?.[1] ?? '';
const EVIL = '<img src=x onerror=alert(1)>';

/** The smallest DOM the console script needs. It has no HTML parser at all. */
class FakeNode {
  readonly tag: string;
  children: FakeNode[] = [];
  attrs = new Map<string, string>();
  className = '';
  disabled = false;
  listeners = new Map<string, () => void>();
  own: string | undefined;
  constructor(tag: string, text?: string) {
    this.tag = tag;
    this.own = text;
  }
  get textContent(): string {
    return this.own ?? this.children.map((c) => c.textContent).join('');
  }
  set textContent(value: string) {
    this.own = undefined;
    this.children = [new FakeNode('#text', String(value))];
  }
  set innerHTML(_value: string) {
    throw new Error('innerHTML must not be used');
  }
  appendChild(child: FakeNode) {
    this.children.push(child);
    return child;
  }
  replaceChildren(...children: FakeNode[]) {
    this.children = children;
  }
  setAttribute(name: string, value: string) {
    this.attrs.set(name, String(value));
  }
  addEventListener(type: string, fn: () => void) {
    this.listeners.set(type, fn);
  }
  findAll(tag: string): FakeNode[] {
    return [...(this.tag === tag ? [this] : []), ...this.children.flatMap((c) => c.findAll(tag))];
  }
}

const STATUS = {
  node: {
    id: 'a'.repeat(64),
    name: 'local',
    role: 'host',
    version: '0.1.0',
    models: [{ name: 'tiny', contextLength: 2048 }],
    token: 'INVITE-TOKEN-123',
    meshId: 'mesh-1',
    posture: {
      debuggerBlocked: true,
      coreDumpsDisabled: false,
      binaryHash: 'f'.repeat(64),
      plaintextBoundary: 'in-process',
      inspectorClosed: true,
      environmentClean: true,
      secureBootEnabled: false,
      platform: 'linux',
      ptraceScope: 'unknown',
    },
  },
  peers: [
    {
      id: 'b'.repeat(64),
      name: EVIL,
      role: 'host',
      models: [EVIL, 'm2'],
      rttMs: 12.4,
      version: EVIL,
      e2e: { capable: true, inferencePublicKey: 'K' },
      attestation: {
        tier: 'hardware-claimed',
        keyStorage: 'tpm2',
        keyFingerprint: 'fp',
        verifiedAt: new Date().toISOString(),
        pinned: true,
        live: true,
        failureReason: EVIL,
      },
      posture: {
        debuggerBlocked: true,
        coreDumpsDisabled: true,
        binaryHash: 'abc',
        plaintextBoundary: 'external-backend',
      },
      connected: true,
      transitive: false,
    },
    {
      id: 'c'.repeat(64),
      name: null,
      role: null,
      models: [],
      rttMs: null,
      version: null,
      e2e: { capable: false, inferencePublicKey: null },
      attestation: null,
      posture: null,
      connected: false,
      transitive: true,
    },
  ],
};

function runPage(fetchImpl: () => Promise<unknown>) {
  const ids = ['node', 'token', 'copy', 'state', 'peers', 'peer-count'];
  const elements = new Map(ids.map((id) => [id, new FakeNode(id)]));
  const created: string[] = [];
  const copied: string[] = [];
  const timers: Array<() => void> = [];
  const context = vm.createContext({
    document: {
      getElementById: (id: string) => elements.get(id) ?? null,
      createElement: (tag: string) => {
        created.push(tag);
        return new FakeNode(tag);
      },
      createTextNode: (text: string) => new FakeNode('#text', text),
    },
    navigator: { clipboard: { writeText: async (t: string) => void copied.push(t) } },
    fetch: fetchImpl,
    setTimeout: (fn: () => void) => {
      timers.push(fn);
      return timers.length;
    },
    Date,
    Math,
    Object,
    Array,
    String,
    isNaN,
    Error,
  });
  vm.runInContext(SCRIPT, context);
  return { elements, created, copied, timers };
}

async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('console page', () => {
  it('is self-contained and uses no HTML sinks', () => {
    assert.ok(CONSOLE_HTML.startsWith('<!doctype html>'));
    assert.ok(SCRIPT.length > 0);
    assert.doesNotMatch(CONSOLE_HTML, /https?:\/\/|\ssrc=|\shref=|@import|url\(/);
    assert.doesNotMatch(SCRIPT, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
    assert.doesNotThrow(() => new vm.Script(SCRIPT));
  });

  it('pins the script with a CSP hash', () => {
    const hash = createHash('sha256').update(SCRIPT, 'utf8').digest('base64');
    assert.ok(CONSOLE_CSP.includes(`'sha256-${hash}'`));
    assert.ok(CONSOLE_CSP.includes("default-src 'none'"));
    assert.ok(CONSOLE_HTML.includes(`'sha256-${hash}'`));
    assert.equal(CONSOLE_HEADERS['content-security-policy'], CONSOLE_CSP);
  });

  it('renders node and peers as text, with dashes for missing fields', async () => {
    const page = runPage(async () => ({ ok: true, status: 200, json: async () => STATUS }));
    await settle();
    const { elements } = page;
    assert.match(elements.get('state')!.textContent, /^Updated/);
    assert.equal(elements.get('token')!.textContent, 'INVITE-TOKEN-123');
    assert.equal(elements.get('copy')!.disabled, false);
    assert.equal(elements.get('peer-count')!.textContent, '2');
    const nodeText = elements.get('node')!.textContent;
    assert.ok(nodeText.includes('tiny (ctx 2048)'));
    assert.ok(nodeText.includes('debugger blocked ✓'));
    assert.ok(nodeText.includes('core dumps off ✗'));

    const rows = elements.get('peers')!.findAll('tr');
    assert.equal(rows.length, 2);
    const cells = (row: FakeNode) => row.findAll('td').map((td) => td.textContent);
    const first = cells(rows[0]!);
    assert.equal(first.length, 15);
    assert.equal(first[1], EVIL, 'a hostile name is shown verbatim as text');
    assert.equal(first[3], `${EVIL}, m2`);
    assert.equal(first[4], '12 ms');
    assert.equal(first[6], 'yes');
    assert.equal(first[7], 'hardware-claimed');
    assert.equal(first[8], 'tpm2');
    assert.match(first[9]!, /s ago$/);
    assert.equal(first[10], 'yes');
    assert.equal(first[11], 'live');
    assert.equal(first[12], EVIL);
    assert.ok(first[13]!.includes('plaintext external-backend'));
    assert.equal(first[14], 'direct');
    const second = cells(rows[1]!);
    assert.deepEqual(second.slice(1, 6), ['—', '—', '—', '—', '—']);
    assert.equal(second[7], 'none');
    assert.deepEqual(second.slice(8, 14), ['—', '—', '—', '—', '—', '—']);
    assert.equal(second[14], 'via mesh');

    // Only the script's own element kinds were created: nothing parsed from peer data.
    assert.ok(
      page.created.every((tag) => ['dt', 'dd', 'code', 'span', 'td', 'tr'].includes(tag)),
      page.created.join(),
    );
    assert.equal(page.timers.length, 1, 'schedules the next poll');

    page.elements.get('copy')!.listeners.get('click')!();
    await settle();
    assert.deepEqual(page.copied, ['INVITE-TOKEN-123']);
  });

  it('shows an error state when the node cannot be reached, and keeps polling', async () => {
    const page = runPage(async () => {
      throw new Error('connection refused');
    });
    await settle();
    assert.match(page.elements.get('state')!.textContent, /Cannot reach node: connection refused/);
    assert.equal(page.timers.length, 1);
    const bad = runPage(async () => ({ ok: false, status: 503, json: async () => ({}) }));
    await settle();
    assert.match(bad.elements.get('state')!.textContent, /HTTP 503/);
  });

  it('survives a status with unexpected shapes', async () => {
    const page = runPage(async () => ({
      ok: true,
      status: 200,
      json: async () => ({ node: 'x', peers: [null, 5, { attestation: 'bad', e2e: 1, models: 'm' }] }),
    }));
    await settle();
    assert.match(page.elements.get('state')!.textContent, /^Updated/);
    assert.equal(page.elements.get('peers')!.findAll('tr').length, 3);
  });
});
