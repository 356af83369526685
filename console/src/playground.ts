/** The chat playground: streams an answer through this node and shows its route and timing. */
import { fill, h } from './dom.ts';
import { ms, rate } from './format.ts';
import { displayHost } from './model.ts';
import type { Status } from './types.ts';

export interface Playground {
  element: HTMLElement;
  update(status: Status): void;
}

export function createPlayground(): Playground {
  const select = h('select', { id: 'pg-model', 'aria-label': 'Model' });
  const prompt = h('textarea', {
    id: 'pg-prompt',
    rows: '3',
    placeholder: 'Ask the mesh something…',
    'aria-label': 'Prompt',
  });
  prompt.value = 'Write a haiku about peer-to-peer networks.';
  const maxTokens = h('input', {
    id: 'pg-max',
    type: 'number',
    min: '1',
    max: '4096',
    value: '64',
    'aria-label': 'Max tokens',
  });
  // Only when the node's API needs a key (--api-key): kept in this page's memory, never stored.
  const apiKey = h('input', {
    id: 'pg-key',
    type: 'password',
    placeholder: 'API key',
    'aria-label': 'API key',
    autocomplete: 'off',
  });
  const keyLabel = h('label', { hidden: '' }, 'API key', apiKey);
  const send = h('button', { id: 'pg-send', type: 'button', class: 'primary' }, 'Send');
  const stop = h('button', { id: 'pg-stop', type: 'button', class: 'ghost', disabled: '' }, 'Stop');
  const output = h('div', { id: 'pg-output', class: 'pg-output', 'aria-live': 'polite' });
  const meta = h('div', { id: 'pg-meta', class: 'pg-meta' });
  let status: Status = {};
  let controller: AbortController | undefined;

  const element = h(
    'div',
    { class: 'playground' },
    h(
      'div',
      { class: 'pg-controls' },
      h('label', null, 'Model', select),
      h('label', null, 'Max tokens', maxTokens),
      keyLabel,
    ),
    prompt,
    h('div', { class: 'pg-actions' }, send, stop),
    output,
    meta,
  );

  function chip(label: string, value: string, tone = '', id?: string): HTMLElement {
    return h(
      'span',
      { class: `chip ${tone}`, 'data-key': id },
      h('span', { class: 'chip-k' }, label),
      h('span', { class: 'chip-v' }, value),
    );
  }

  async function run(): Promise<void> {
    const model = select.value;
    if (!model) return;
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    output.textContent = '';
    output.classList.add('streaming');
    fill(meta, chip('status', 'connecting…'));
    const started = performance.now();
    let firstAt: number | undefined;
    let chunks = 0;
    let usageTokens: number | undefined;
    let route: HTMLElement[] = [];
    try {
      const res = await fetch('/api/chat', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'text/event-stream',
          ...(apiKey.value ? { authorization: `Bearer ${apiKey.value}` } : {}),
        },
        body: JSON.stringify({
          model,
          messages: [{ role: 'user', content: prompt.value }],
          max_tokens: Math.max(1, Math.min(4096, Number(maxTokens.value) || 64)),
          stream: true,
          stream_options: { include_usage: true },
        }),
        signal: controller.signal,
      });
      const host = res.headers.get('x-mesh-host');
      const path = res.headers.get('x-mesh-path');
      const e2e = res.headers.get('x-mesh-e2e');
      route = [
        chip(
          'host',
          host ? displayHost(host, status.peers ?? [], status.node?.name ?? 'this node') : '—',
          '',
          'host',
        ),
        chip('path', path ?? '—', path === 'relay' ? 'info' : '', 'path'),
        chip(
          'encryption',
          e2e === 'encrypted' ? 'sealed end to end' : e2e === 'local' ? 'local (no network)' : (e2e ?? '—'),
          e2e === 'plaintext' ? 'warn' : 'ok',
          'e2e',
        ),
      ];
      if (res.status === 401) keyLabel.hidden = false;
      if (!res.ok || !res.body) {
        const body = await res.text();
        let message = `HTTP ${res.status}`;
        try {
          message = String(JSON.parse(body)?.error?.message ?? message);
        } catch {
          // not JSON: keep the status line
        }
        throw new Error(message);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let pending = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const lines = (pending + value).split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]' || data === '') continue;
          const event = JSON.parse(data);
          if (event.error) throw new Error(String(event.error.message ?? 'the stream failed'));
          const piece = event.choices?.[0]?.delta?.content;
          if (typeof piece === 'string' && piece !== '') {
            firstAt ??= performance.now();
            chunks++;
            output.append(document.createTextNode(piece));
          }
          if (event.usage?.completion_tokens !== undefined)
            usageTokens = Number(event.usage.completion_tokens);
        }
        showTiming(false);
      }
      showTiming(true);
    } catch (error) {
      const aborted = controller?.signal.aborted;
      fill(meta, ...route, chip('error', aborted ? 'stopped' : (error as Error).message, 'bad', 'error'));
    } finally {
      output.classList.remove('streaming');
      send.disabled = false;
      stop.disabled = true;
      controller = undefined;
    }

    function showTiming(done: boolean): void {
      const now = performance.now();
      const tokens = usageTokens ?? chunks;
      const genS = firstAt !== undefined ? (now - firstAt) / 1000 : 0;
      fill(
        meta,
        ...route,
        chip('first token', firstAt !== undefined ? ms((firstAt - started) / 1000) : '—', '', 'ttft'),
        chip(done ? 'total' : 'elapsed', ms((now - started) / 1000), '', 'total'),
        chip('tokens', String(tokens), '', 'tokens'),
        // A burst (everything in one read) has no generation window: use the whole request then.
        chip(
          'tokens/s',
          tokens > 0 ? rate(tokens / (genS >= 0.1 ? genS : (now - started) / 1000)) : '—',
          '',
          'tps',
        ),
        done ? chip('status', 'done', 'ok', 'done') : chip('status', 'streaming…', 'info'),
      );
    }
  }

  send.addEventListener('click', () => void run());
  stop.addEventListener('click', () => controller?.abort());
  prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) void run();
  });

  return {
    element,
    update(next) {
      status = next;
      const names = (next.node?.models ?? []).map((m) => String(m.name ?? '')).filter((n) => n !== '');
      const current = [...select.options].map((o) => o.value);
      if (names.join('\n') !== current.join('\n')) {
        const keep = select.value;
        fill(select, ...names.map((n) => h('option', { value: n }, n)));
        if (names.includes(keep)) select.value = keep;
      }
      send.disabled = controller !== undefined || names.length === 0;
    },
  };
}
