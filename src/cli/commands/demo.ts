import { join } from 'node:path';
import { ensureTinyGguf } from '../../backends/gguf/tiny-model.ts';
import { createLogger, type LogFormat } from '../../log.ts';
import { DEFAULT_API_PORT, DEFAULT_CONSOLE_PORT, defaultConfig, defaultDataDir } from '../../node/config.ts';
import { type MeshNode, type MeshNodeDeps, startMeshNode } from '../../node/mesh-node.ts';
import { currentPosture } from '../../node/posture.ts';
import { choiceFlag, parseFlags } from '../args.ts';
import type { CliContext } from '../context.ts';
import { waitForShutdownSignal } from './serve.ts';

const FLAGS = {
  once: { type: 'boolean' },
  'data-dir': { type: 'string' },
  'log-format': { type: 'string' },
  prompt: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const HELP = `mesh-llm demo [--once] [--data-dir DIR] [--prompt TEXT]

Starts three nodes on loopback — a relay, a host serving a tiny generated GGUF in-process
(reachable only through the relay, like a machine behind NAT), and a client — then streams a
chat completion into the client and prints the answer and the route it took. Keeps running
until Ctrl-C so you can point any OpenAI client at it; --once exits after the first answer.
The tiny model has random weights: its answer is gibberish, but it is real llama.cpp output.`;

/** The main job on an embedded default: a 3-node mesh with a relay-only path, end to end. */
export async function runDemo(args: string[], context: CliContext): Promise<number> {
  const { values } = parseFlags(args, FLAGS);
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const root = values['data-dir'] ?? join(defaultDataDir(), 'demo');
  const logFormat = choiceFlag<LogFormat>(values['log-format'], '--log-format', ['pretty', 'json'], 'pretty');
  const logger = createLogger({ format: logFormat, level: process.env.MESH_LLM_LOG_LEVEL ?? 'warn' });
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const posture = await currentPosture(context.hardening, logger);
  const deps = (name: string): MeshNodeDeps => ({ logger: logger.child({ node: name }), posture });
  const nodes: MeshNode[] = [];
  const stopAll = async () => {
    for (const node of nodes.splice(0).reverse()) await node.stop();
  };

  try {
    say('• generating a tiny GGUF model (random weights)…');
    const modelPath = await ensureTinyGguf(join(root, 'models'));
    const common = {
      meshHost: '127.0.0.1',
      heartbeatMs: 5_000,
      logFormat,
      consolePort: undefined,
      apiPort: 0,
    };

    say('• starting the relay…');
    const relay = await startMeshNode(
      defaultConfig({ ...common, dataDir: join(root, 'relay'), name: 'demo-relay', relay: true }),
      deps('relay'),
    );
    nodes.push(relay);
    const token = relay.mesh.inviteToken();

    say('• starting the host (reachable only through the relay), loading the model…');
    const host = await startMeshNode(
      defaultConfig({
        ...common,
        dataDir: join(root, 'host'),
        name: 'demo-host',
        join: [token],
        reachableOnlyViaRelay: true,
        model: { path: modelPath, name: 'tiny-llama', threads: 1, contextSize: 256 },
      }),
      deps('host'),
    );
    nodes.push(host);

    say('• starting the client…');
    const client = await startWithFallbackPorts((apiPort, consolePort) =>
      startMeshNode(
        defaultConfig({
          ...common,
          dataDir: join(root, 'client'),
          name: 'demo-client',
          client: true,
          join: [token],
          apiPort,
          consolePort,
        }),
        deps('client'),
      ),
    );
    nodes.push(client);

    await waitFor(
      () => client.router.listModels().some((m) => m.id === 'tiny-llama'),
      30_000,
      'the client to see the host',
    );
    say(`• the client sees model 'tiny-llama' on host ${host.endpointId.slice(0, 12)}`);

    const started = performance.now();
    const response = await fetch(`${client.apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-llama',
        messages: [{ role: 'user', content: values.prompt ?? 'Hello from the mesh!' }],
        max_tokens: 24,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    if (!response.ok || !response.body)
      throw new Error(`the demo request failed with HTTP ${response.status}`);
    const route = `client ${client.endpointId.slice(0, 8)} → ${
      response.headers.get('x-mesh-path') === 'relay'
        ? `relay ${relay.endpointId.slice(0, 8)} (circuit) → `
        : ''
    }host ${response.headers.get('x-mesh-host')?.slice(0, 8)}`;
    process.stdout.write('• answer (streamed; random weights, so gibberish): ');
    let firstTokenMs: number | undefined;
    let tokens = 0;
    let usage: { completion_tokens?: number } | undefined;
    const decoder = new TextDecoder();
    let pending = '';
    for await (const chunk of response.body) {
      pending += decoder.decode(chunk, { stream: true });
      const events = pending.split('\n\n');
      pending = events.pop() ?? '';
      for (const event of events) {
        const data = event.replace(/^data: /, '');
        if (data === '[DONE]') continue;
        const parsed = JSON.parse(data) as {
          choices?: { delta?: { content?: string } }[];
          usage?: typeof usage;
        };
        const text = parsed.choices?.[0]?.delta?.content;
        if (text) {
          firstTokenMs ??= performance.now() - started;
          tokens++;
          process.stdout.write(printable(text));
        }
        if (parsed.usage) usage = parsed.usage;
      }
    }
    say('');
    say(`• route: ${route}`);
    say(
      `• encryption: ${response.headers.get('x-mesh-e2e')} (sealed to the host's inference key; the relay saw ciphertext only)`,
    );
    say(
      `• ${usage?.completion_tokens ?? tokens} tokens, first after ${Math.round(firstTokenMs ?? 0)} ms, done in ${Math.round(performance.now() - started)} ms`,
    );
    if (values.once) {
      await stopAll();
      return 0;
    }
    say('');
    say(`The mesh keeps running. OpenAI API: ${client.apiUrl}/v1   (model: tiny-llama)`);
    if (client.consoleUrl) say(`Console: ${client.consoleUrl}`);
    say(`Try: curl ${client.apiUrl}/v1/models      Ctrl-C to stop.`);
    await waitForShutdownSignal();
    await stopAll();
    return 0;
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** The client takes the usual ports when free, any free port otherwise. */
async function startWithFallbackPorts(
  start: (api: number, console: number) => Promise<MeshNode>,
): Promise<MeshNode> {
  try {
    return await start(DEFAULT_API_PORT, DEFAULT_CONSOLE_PORT);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    return start(0, 0);
  }
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Random weights produce arbitrary bytes: show them without control characters. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\ufffd]/g, '·');
}
