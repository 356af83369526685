/**
 * The web console: one self-contained page (no external assets) that polls /api/status.
 * Peer names, models and versions come from the network, so the script builds the DOM
 * with textContent only and never parses strings as HTML. The script is pinned by a CSP
 * hash, so nothing injected into the page could run even if escaping were ever missed.
 */
import { createHash } from 'node:crypto';

const STYLE = `
:root { color-scheme: light dark; --bg: #f6f7f9; --fg: #1b1f24; --muted: #667085; --card: #fff;
  --line: #d9dde3; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --accent: #0b62d6; }
@media (prefers-color-scheme: dark) { :root { --bg: #0f1216; --fg: #e6e8eb; --muted: #98a2b3;
  --card: #171b21; --line: #2a3038; --ok: #3fb950; --warn: #d29922; --bad: #f85149; --accent: #58a6ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; align-items: center; gap: 12px; padding: 12px 20px; border-bottom: 1px solid var(--line); background: var(--card); }
header h1 { font-size: 16px; margin: 0; }
main { padding: 16px 20px; display: grid; gap: 16px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; overflow-x: auto; }
h2 { font-size: 14px; margin: 0 0 10px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; word-break: break-all; }
code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.wrap { white-space: normal; max-width: 260px; word-break: break-word; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; border: 1px solid var(--line); font-size: 12px; margin: 0 4px 2px 0; }
.ok { color: var(--ok); border-color: var(--ok); }
.warn { color: var(--warn); border-color: var(--warn); }
.bad { color: var(--bad); border-color: var(--bad); }
.muted { color: var(--muted); }
#state { margin-left: auto; font-size: 12px; }
button { font: inherit; padding: 2px 10px; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--fg); cursor: pointer; }
button:hover { border-color: var(--accent); }
.token { display: flex; gap: 8px; align-items: flex-start; }
.token code { flex: 1; word-break: break-all; }
`;

// Plain ES2019 without template literals, so it can sit inside this TS template string.
const SCRIPT = `
(function () {
  'use strict';
  var POLL_MS = 3000;
  var DASH = '\\u2014';
  var TIERS = { 'none': 'bad', 'self-signed': 'warn', 'hardware-claimed': 'ok', 'hardware-rooted': 'ok' };
  var currentToken = null;

  function byId(id) { return document.getElementById(id); }

  /** Creates an element; children are nodes or strings (always inserted as text). */
  function el(tag, className, children, title) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (title) node.setAttribute('title', title);
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return node;
  }

  function present(v) { return v !== null && v !== undefined && v !== ''; }
  function text(v) { return present(v) ? String(v) : DASH; }
  function shortId(id) {
    if (!present(id)) return DASH;
    var s = String(id);
    return s.length > 16 ? s.slice(0, 8) + '\\u2026' + s.slice(-4) : s;
  }
  function shortHash(h) { return present(h) ? String(h).slice(0, 12) : DASH; }
  function yesNo(v) { return v === true ? 'yes' : v === false ? 'no' : DASH; }
  function badge(label, cls, title) { return el('span', 'badge ' + (cls || ''), [label], title); }
  function flag(label, value) {
    return badge(label + (value === true ? ' \\u2713' : value === false ? ' \\u2717' : ' ?'),
      value === true ? 'ok' : value === false ? 'bad' : 'muted');
  }

  function toDate(v) {
    if (!present(v)) return null;
    var d = new Date(typeof v === 'number' && v < 1e12 ? v * 1000 : v);
    return isNaN(d.getTime()) ? null : d;
  }
  function ago(v) {
    var d = toDate(v);
    if (!d) return el('span', 'muted', [DASH]);
    var s = Math.round((Date.now() - d.getTime()) / 1000);
    var label = s < 0 ? 'in ' + (-s) + 's' : s < 120 ? s + 's ago' : s < 7200 ? Math.round(s / 60) + 'm ago' : Math.round(s / 3600) + 'h ago';
    return el('span', '', [label], d.toISOString());
  }

  function postureBadges(p) {
    if (!p || typeof p !== 'object') return [el('span', 'muted', [DASH])];
    var boundary = p.plaintextBoundary;
    return [
      flag('debugger blocked', p.debuggerBlocked),
      flag('core dumps off', p.coreDumpsDisabled),
      badge('hash ' + shortHash(p.binaryHash), 'muted', text(p.binaryHash)),
      badge('plaintext ' + text(boundary), boundary === 'in-process' ? 'ok' : boundary === 'external-backend' ? 'warn' : 'muted'),
    ];
  }

  function modelNames(models) {
    if (!Array.isArray(models) || models.length === 0) return DASH;
    return models.map(function (m) {
      if (m && typeof m === 'object') return text(m.name) + (present(m.contextLength) ? ' (ctx ' + m.contextLength + ')' : '');
      return text(m);
    }).join(', ');
  }

  function row(dl, label, value) {
    dl.appendChild(el('dt', '', [label]));
    dl.appendChild(el('dd', '', [value]));
  }

  function renderNode(node) {
    var dl = byId('node');
    var n = node && typeof node === 'object' ? node : {};
    dl.replaceChildren();
    row(dl, 'Id', el('code', '', [text(n.id)]));
    row(dl, 'Name', text(n.name));
    row(dl, 'Role', text(n.role));
    row(dl, 'Version', text(n.version));
    row(dl, 'Mesh', el('code', '', [text(n.meshId)]));
    row(dl, 'Models', modelNames(n.models));
    row(dl, 'Posture', el('span', '', postureBadges(n.posture)));
    var p = n.posture && typeof n.posture === 'object' ? n.posture : null;
    if (p) {
      row(dl, 'Hardening', el('span', '', [
        flag('inspector closed', p.inspectorClosed), flag('env clean', p.environmentClean),
        flag('secure boot', p.secureBootEnabled), badge('platform ' + text(p.platform), 'muted'),
        badge('ptrace scope ' + text(p.ptraceScope), 'muted'),
      ]));
    }
    currentToken = present(n.token) ? String(n.token) : null;
    byId('token').textContent = text(currentToken);
    byId('copy').disabled = currentToken === null;
  }

  function cell(content, className) { return el('td', className || '', [content]); }

  function renderPeers(peers) {
    var body = byId('peers');
    var list = Array.isArray(peers) ? peers : [];
    body.replaceChildren();
    byId('peer-count').textContent = String(list.length);
    if (list.length === 0) {
      var empty = el('td', 'muted', ['No peers yet.']);
      empty.setAttribute('colspan', '15');
      body.appendChild(el('tr', '', [empty]));
      return;
    }
    list.forEach(function (peer) {
      var p = peer && typeof peer === 'object' ? peer : {};
      var a = p.attestation && typeof p.attestation === 'object' ? p.attestation : null;
      var e2e = p.e2e && typeof p.e2e === 'object' ? p.e2e : {};
      var tier = a && present(a.tier) ? String(a.tier) : 'none';
      var tierClass = Object.prototype.hasOwnProperty.call(TIERS, tier) ? TIERS[tier] : 'muted';
      var link = p.connected === true ? 'direct' : p.transitive === true ? 'via mesh' : 'disconnected';
      body.appendChild(el('tr', '', [
        cell(el('code', '', [shortId(p.id)], text(p.id))),
        cell(text(p.name), 'wrap'),
        cell(text(p.role)),
        cell(modelNames(p.models), 'wrap'),
        cell(typeof p.rttMs === 'number' ? Math.round(p.rttMs) + ' ms' : DASH),
        cell(text(p.version)),
        cell(e2e.capable === true ? badge('yes', 'ok', text(e2e.inferencePublicKey)) : badge('no', 'warn')),
        cell(badge(tier, tierClass)),
        cell(a ? text(a.keyStorage) : DASH),
        cell(a ? ago(a.verifiedAt) : DASH),
        cell(a ? yesNo(a.pinned) : DASH),
        cell(a ? (a.live === true ? badge('live', 'ok') : a.live === false ? badge('stale', 'bad') : DASH) : DASH),
        cell(a && present(a.failureReason) ? el('span', 'bad', [String(a.failureReason)]) : DASH, 'wrap'),
        cell(el('span', '', postureBadges(p.posture)), 'wrap'),
        cell(badge(link, p.connected === true ? 'ok' : p.transitive === true ? 'muted' : 'bad')),
      ]));
    });
  }

  function setState(cls, message) {
    var s = byId('state');
    s.className = cls;
    s.textContent = message;
  }

  function copyToken() {
    if (currentToken === null) return;
    var done = function () { byId('copy').textContent = 'Copied'; setTimeout(function () { byId('copy').textContent = 'Copy'; }, 1500); };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(currentToken).then(done, selectToken);
    } else {
      selectToken();
    }
  }

  /** Without clipboard access, select the token so the user can copy it by hand. */
  function selectToken() {
    var range = document.createRange();
    range.selectNodeContents(byId('token'));
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    setState('warn', 'Token selected: press Ctrl+C to copy');
  }

  function refresh() {
    fetch('/api/status', { cache: 'no-store', headers: { accept: 'application/json' } })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (status) {
        var s = status && typeof status === 'object' ? status : {};
        renderNode(s.node);
        renderPeers(s.peers);
        setState('ok', 'Updated ' + new Date().toLocaleTimeString());
      })
      .catch(function (err) {
        setState('bad', 'Cannot reach node: ' + (err && err.message ? err.message : 'error'));
      })
      .then(function () { setTimeout(refresh, POLL_MS); });
  }

  byId('copy').addEventListener('click', copyToken);
  refresh();
})();
`;

const BODY = `
<header><h1>mesh-llm console</h1><span id="state" class="muted">Loading\u2026</span></header>
<main>
  <section><h2>This node</h2><dl id="node"></dl>
    <h2 style="margin-top:12px">Invite token</h2>
    <div class="token"><code id="token">\u2014</code><button id="copy" type="button" disabled>Copy</button></div>
  </section>
  <section><h2>Peers (<span id="peer-count">0</span>)</h2>
    <table><thead><tr>
      <th>Peer</th><th>Name</th><th>Role</th><th>Models</th><th>RTT</th><th>Version</th><th>E2E</th>
      <th>Attestation</th><th>Key storage</th><th>Verified</th><th>Pinned</th><th>Liveness</th>
      <th>Failure</th><th>Posture</th><th>Link</th>
    </tr></thead><tbody id="peers"></tbody></table>
  </section>
</main>`;

const SCRIPT_HASH = createHash('sha256').update(SCRIPT, 'utf8').digest('base64');

const CSP_DIRECTIVES = [
  "default-src 'none'",
  `script-src 'sha256-${SCRIPT_HASH}'`,
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
];

/** The Content-Security-Policy header for the console page (frame-ancestors works only as a header). */
export const CONSOLE_CSP = [...CSP_DIRECTIVES, "frame-ancestors 'none'"].join('; ');

export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${CSP_DIRECTIVES.join('; ')}">
<meta name="referrer" content="no-referrer">
<title>mesh-llm console</title>
<style>${STYLE}</style>
</head>
<body>${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

/** Headers to serve CONSOLE_HTML with. */
export const CONSOLE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};
