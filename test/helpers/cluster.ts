import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { ensureTinyGguf } from '../../src/backends/gguf/tiny-model.ts';
import { createLogger } from '../../src/log.ts';
import type { StreamTapEvent } from '../../src/mesh/types.ts';
import { defaultConfig, type NodeConfig } from '../../src/node/config.ts';
import { type MeshNode, startMeshNode } from '../../src/node/mesh-node.ts';
import { currentPosture } from '../../src/node/posture.ts';

/**
 * Starts real nodes in this process on loopback (ephemeral ports, temp data dirs, fast
 * heartbeat), each with its own log capture, and stops them all at the end.
 */
export class TestCluster {
  readonly nodes: MeshNode[] = [];
  readonly logs = new Map<string, string[]>();
  #root: string | undefined;

  async root(): Promise<string> {
    this.#root ??= await mkdtemp(join(tmpdir(), 'mesh-llm-test-'));
    return this.#root;
  }

  async tinyModel(): Promise<string> {
    return ensureTinyGguf(join(await this.root(), 'models'));
  }

  async start(
    name: string,
    overrides: Partial<NodeConfig> = {},
    options: { streamTap?: (event: StreamTapEvent) => void } = {},
  ): Promise<MeshNode> {
    const dataDir = overrides.dataDir ?? join(await this.root(), name);
    const lines: string[] = this.logs.get(name) ?? [];
    this.logs.set(name, lines);
    const logger = createLogger({
      format: 'json',
      level: 'debug',
      name,
      destination: new Writable({
        write(chunk, _encoding, callback) {
          lines.push(String(chunk));
          callback();
        },
      }),
    });
    const config = defaultConfig({
      dataDir,
      name,
      apiPort: 0,
      consolePort: 0,
      meshHost: '127.0.0.1',
      heartbeatMs: 1_000,
      attestationKey: 'software',
      ...overrides,
    });
    const posture = await currentPosture(undefined, logger);
    const node = await startMeshNode(config, { logger, posture, streamTap: options.streamTap });
    this.nodes.push(node);
    return node;
  }

  async stopNode(node: MeshNode): Promise<void> {
    const index = this.nodes.indexOf(node);
    if (index >= 0) this.nodes.splice(index, 1);
    await node.stop();
  }

  async stopAll(): Promise<void> {
    for (const node of this.nodes.splice(0).reverse()) await node.stop().catch(() => undefined);
    if (this.#root) await rm(this.#root, { recursive: true, force: true });
  }
}

/** Polls until `check` passes; fails with `what` after `timeoutMs`. */
export async function waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function seesModel(node: MeshNode, model: string): boolean {
  return node.router.listModels().some((m) => m.id === model && m.hosts.some((h) => h !== 'local'));
}
