import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'node:test';
import type { Connection, PeerId, PeerStore, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { encode } from 'it-length-prefixed';
import { createLogger, silentLogger } from '../../src/log.ts';
import {
  generateIdentity,
  loadOrCreateIdentity,
  type MeshIdentity,
  peerIdFromEndpointId,
} from '../../src/mesh/identity.ts';
import { createLibp2pMesh, type Libp2pMesh, type MeshOptions } from '../../src/mesh/libp2p-mesh.ts';
import { PROTOCOL_GOSSIP } from '../../src/mesh/types.ts';

export const HEARTBEAT_MS = 300;

/** Tracks nodes and temp dirs created by one test so `cleanup` can always release them. */
export class Cluster {
  readonly nodes: Libp2pMesh[] = [];
  private readonly dirs: string[] = [];

  async tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'mesh-test-'));
    this.dirs.push(dir);
    return dir;
  }

  async node(
    options: Partial<MeshOptions> & { identity?: MeshIdentity; dataDir?: string } = {},
  ): Promise<Libp2pMesh> {
    const identity =
      options.identity ??
      (options.dataDir !== undefined
        ? await loadOrCreateIdentity(options.dataDir)
        : await generateIdentity());
    const node = await createLibp2pMesh({
      version: 'test',
      // MESH_TEST_LOG=1 shows the nodes' logs when debugging a test.
      logger: process.env.MESH_TEST_LOG ? createLogger({ level: 'debug' }) : silentLogger(),
      heartbeatMs: HEARTBEAT_MS,
      meshId: 'test-mesh',
      ...options,
      identity,
    });
    this.nodes.push(node);
    await node.start();
    return node;
  }

  async cleanup(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => n.abort()));
    await Promise.allSettled(this.dirs.map((d) => rm(d, { recursive: true, force: true })));
  }
}

/**
 * Registers hooks that give every test of the enclosing file or suite its own Cluster and
 * release it afterwards; call the returned function inside a test to get it.
 */
export function clusterPerTest(): () => Cluster {
  let current: Cluster | undefined;
  beforeEach(() => {
    current = new Cluster();
  });
  afterEach(async () => {
    await current?.cleanup();
    current = undefined;
  });
  return () => {
    if (current === undefined) throw new Error('the cluster exists only while a test runs');
    return current;
  };
}

/** Polls `condition` every 25 ms until true; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function readAll(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** The libp2p node inside a mesh node (private): for tests that check libp2p's own behaviour. */
export function libp2pOf(node: Libp2pMesh): {
  peerStore: PeerStore;
  getConnections(peer?: PeerId): Connection[];
  dial(addr: Multiaddr): Promise<Connection>;
  dialProtocol(
    peer: PeerId,
    protocol: string,
    options?: { runOnLimitedConnection?: boolean },
  ): Promise<Stream>;
} {
  return (node as unknown as { libp2p: ReturnType<typeof libp2pOf> }).libp2p;
}

/** A raw libp2p gossip stream from `from` to `to` (gossip speaks lpStream on the libp2p stream). */
export function gossipStream(from: Libp2pMesh, to: Libp2pMesh): Promise<Stream> {
  return libp2pOf(from).dialProtocol(peerIdFromEndpointId(to.endpointId), PROTOCOL_GOSSIP, {
    runOnLimitedConnection: true,
  });
}

/** The varint length prefix of an `n`-byte frame, for any n: a hostile peer may claim past the cap. */
export function lengthPrefix(n: number): Uint8Array {
  return encode
    .single(new Uint8Array(n), { maxDataLength: Infinity })
    .sublist(0, -n || undefined)
    .subarray();
}
