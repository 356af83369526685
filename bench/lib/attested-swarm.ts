/**
 * Many attested hosts in ONE process, for bench/attested-peers.ts (which runs it as a child).
 *
 * Each host is its own libp2p node (own Ed25519 identity, TCP + noise + yamux, identify, ping)
 * speaking the mesh protocols with the project's own code: signed announcements carrying an
 * inference key, posture and a statement signed by its own software attestation key
 * (buildStatement), gossip as a member does it (requestGossip/respondGossip: the full set each
 * heartbeat, only news when pushing, digests of what it holds, answers with news only),
 * answers to liveness challenges (handleAttestStream), and per heartbeat a re-signed
 * announcement, a gossip exchange, a ping and a liveness challenge of the node. When one host
 * re-signs its statement, every other host pushes that news to the node too, as members of a
 * full mesh do when they learn of a changed announcement.
 *
 * Why not 100 full nodes (startMeshNode)? Every full node verifies every other node's
 * announcements and statements and challenges every other node, so 100 of them in one process
 * cost O(N²): on one core they could not keep up even with 30 s refreshes and a 15 s heartbeat
 * (100% CPU, peers swept and rejoining). These hosts skip that verification (their own cost, not the node's), so the node under test sees
 * what 100 real peers send it at a fraction of the CPU.
 *
 *   node bench/lib/attested-swarm.ts --join TOKEN --data-root DIR
 *        [--peers 100] [--refresh-ms 300000] [--heartbeat-ms 60000]
 *
 * Prints "swarm ready <n>" when all hosts have joined. stdin commands, one per line:
 * "refresh <ms>" (new refresh interval, random phase per host; 0 = none), "beat" (every host beats now),
 * "stats" (prints "stats <json>"). Leaves the mesh and exits on SIGTERM/SIGINT or when stdin closes.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { create, fromBinary } from '@bufbuild/protobuf';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import type { Libp2p, PeerId, Stream } from '@libp2p/interface';
import { type Ping, ping } from '@libp2p/ping';
import { type TCPSocketOptions, tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { SoftwareKeyProvider } from '../../src/attestation/providers/software.ts';
import { buildStatement, encodeStatement, parseStatement } from '../../src/attestation/statement.ts';
import { postureToProto } from '../../src/hardening/posture.ts';
import type { SecurityPostureFacts } from '../../src/hardening/types.ts';
import { silentLogger } from '../../src/log.ts';
import { signAnnouncement } from '../../src/mesh/announcements.ts';
import { challengePeer, handleAttestStream } from '../../src/mesh/attest-protocol.ts';
import { toByteStream } from '../../src/mesh/byte-stream.ts';
import { type GossipEntry, newsFor, requestGossip, respondGossip } from '../../src/mesh/gossip.ts';
import {
  endpointIdFromBytes,
  endpointIdFromPeerId,
  endpointIdToBytes,
  generateIdentity,
  type MeshIdentity,
} from '../../src/mesh/identity.ts';
import { decodeInviteToken } from '../../src/mesh/invite.ts';
import { PROTOCOL_ATTEST, PROTOCOL_GOSSIP } from '../../src/mesh/types.ts';
import { currentPosture } from '../../src/node/posture.ts';
import { VERSION } from '../../src/node/version.ts';
import {
  NodeRole,
  PeerAnnouncementSchema,
  ServedModelRuntimeSchema,
  type SignedAnnouncement,
} from '../../src/proto/gen/mesh_pb.js';

const { values } = parseArgs({
  options: {
    join: { type: 'string' },
    'data-root': { type: 'string' },
    peers: { type: 'string', default: '100' },
    'refresh-ms': { type: 'string', default: '300000' },
    'heartbeat-ms': { type: 'string', default: '60000' },
  },
});
const { join: token, 'data-root': dataRoot } = values;
if (!token || !dataRoot) throw new Error('--join and --data-root are required');
const PEERS = Number(values.peers);
const HEARTBEAT_MS = Number(values['heartbeat-ms']);
const TIMEOUT_MS = 10_000;

const invite = decodeInviteToken(token);
const hubAddrs = invite.addrs.map((a) => multiaddr(a));
const logger = silentLogger();
const posture: SecurityPostureFacts = {
  ...(await currentPosture(undefined, logger)),
  plaintextBoundary: 'external-backend',
};
const postureProto = postureToProto(posture);
const productName = await readFile('/sys/devices/virtual/dmi/id/product_name', 'utf8').catch(() => '');
const hardware = {
  chipName: (cpus()[0]?.model ?? 'unknown').trim().slice(0, 200),
  hardwareModel: productName.trim().slice(0, 200) || 'unknown',
  unifiedMemoryBytes: totalmem(),
};

const stats = {
  refreshes: 0,
  /** Liveness challenges the node under test sent us (each one answered). */
  challengesReceived: 0,
  /** Our challenges of the node under test: answered correctly / failed. */
  challengesOfNodeOk: 0,
  challengesOfNodeFailed: 0,
};

class Host {
  readonly name: string;
  readonly identity: MeshIdentity;
  readonly provider: SoftwareKeyProvider;
  readonly libp2p: Libp2p<{ ping: Ping }>;
  readonly inferencePublicKey: string;
  hub: PeerId | undefined;
  /** What the node's gossip told us (newest per origin), passed on as a member would. */
  known = new Map<string, GossipEntry>();
  own: SignedAnnouncement | undefined;
  blob: Uint8Array | undefined;
  seq = 0n;
  timers: NodeJS.Timeout[] = [];
  refreshTimer: NodeJS.Timeout | undefined;
  exchanging: Promise<void> | undefined;
  again = false;

  constructor(
    name: string,
    identity: MeshIdentity,
    provider: SoftwareKeyProvider,
    libp2p: Libp2p<{ ping: Ping }>,
  ) {
    this.name = name;
    this.identity = identity;
    this.provider = provider;
    this.libp2p = libp2p;
    const spki = generateKeyPairSync('x25519').publicKey.export({ format: 'der', type: 'spki' });
    this.inferencePublicKey = spki.subarray(-32).toString('base64');
  }

  /**
   * Host `index` lives on its own loopback address (127.0.0.2, .3, …), as separate machines
   * would: libp2p admits only 5 new inbound connections per second from one address.
   */
  static async start(index: number): Promise<Host> {
    const name = `peer-${index}`;
    const ip = `127.0.${Math.floor(index / 250)}.${2 + (index % 250)}`;
    const identity = await generateIdentity();
    const provider = await SoftwareKeyProvider.open({ dataDir: join(dataRoot!, name), logger });
    const libp2p = (await createLibp2p({
      privateKey: identity.privateKey,
      addresses: { listen: [`/ip4/${ip}/tcp/0`] },
      // Passed on to net.connect, which takes localAddress though the plugin's type omits it.
      transports: [tcp({ dialOpts: { localAddress: ip } as TCPSocketOptions })],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping() },
    })) as unknown as Libp2p<{ ping: Ping }>;
    const host = new Host(name, identity, provider, libp2p);
    await libp2p.handle(PROTOCOL_GOSSIP, (stream) => {
      respondGossip(stream, async (theirs) => {
        host.absorb(theirs.announcements);
        return { announcements: newsFor(host.fullEntries(), theirs.known) };
      }).catch((error: Error) => stream.abort(error));
    });
    await libp2p.handle(PROTOCOL_ATTEST, (stream) => {
      stats.challengesReceived++;
      void handleAttestStream(toByteStream(stream), provider);
    });
    await libp2p.start();
    try {
      await host.sign();
      host.hub = await dialNode(libp2p);
      await host.exchange();
    } catch (error) {
      await libp2p.stop();
      throw error;
    }
    // Random phase: real hosts do not all beat at once.
    const beat = setTimeout(() => {
      host.timers.push(setInterval(() => void host.heartbeat(), HEARTBEAT_MS));
    }, Math.random() * HEARTBEAT_MS);
    host.timers.push(beat);
    return host;
  }

  fullEntries(): GossipEntry[] {
    const own = this.own ? [{ endpointId: this.identity.endpointId, seq: this.seq, signed: this.own }] : [];
    return [...own, ...this.known.values()];
  }

  digests(): Map<string, bigint> {
    return new Map(this.fullEntries().map((e) => [e.endpointId, e.seq]));
  }

  absorb(list: SignedAnnouncement[]): void {
    for (const signed of list) {
      const announcement = fromBinary(PeerAnnouncementSchema, signed.announcement);
      const endpointId = endpointIdFromBytes(announcement.endpointId);
      if (endpointId === this.identity.endpointId) continue;
      const held = this.known.get(endpointId);
      if (held === undefined || held.seq < announcement.announcementSeq) {
        this.known.set(endpointId, { endpointId, seq: announcement.announcementSeq, signed });
      }
    }
  }

  /** A fresh statement (new timestamp and signature), as the attestation service's refresh does. */
  async sign(): Promise<void> {
    const statement = await buildStatement(
      {
        ...hardware,
        nodeEndpointId: this.identity.endpointId,
        inferencePublicKey: this.inferencePublicKey,
        version: VERSION,
        posture,
        nowMs: Date.now(),
      },
      this.provider,
    );
    this.blob = encodeStatement(statement);
    await this.announce(false);
  }

  async announce(leaving: boolean): Promise<void> {
    const announcement = create(PeerAnnouncementSchema, {
      endpointId: endpointIdToBytes(this.identity.endpointId),
      role: NodeRole.HOST,
      version: VERSION,
      meshId: invite.mesh,
      hostedModels: [this.name],
      hostedModelsKnown: true,
      servedModelRuntime: [create(ServedModelRuntimeSchema, { modelName: this.name, ready: true })],
      inferencePublicKey: this.inferencePublicKey,
      securityPosture: postureProto,
      hardwareAttestationBlob: this.blob,
      announcementSeq: ++this.seq,
      name: this.name,
      listenAddrs: this.libp2p.getMultiaddrs().map((ma) => ma.toString()),
      leaving,
      issuedAtMs: BigInt(Date.now()),
    });
    this.own = await signAnnouncement(this.identity.privateKey, announcement);
  }

  /**
   * One exchange with the node, as the mesh does it: the full set (heartbeat) or only `push`
   * (news), with digests of what we hold; overlapping calls coalesce into one full rerun.
   */
  exchange(push?: SignedAnnouncement[]): Promise<void> {
    if (this.exchanging) {
      this.again = true;
      return this.exchanging;
    }
    this.exchanging = (async () => {
      do {
        this.again = false;
        let stream: Stream | undefined;
        try {
          stream = await this.libp2p.dialProtocol(this.hub!, PROTOCOL_GOSSIP, {
            signal: AbortSignal.timeout(TIMEOUT_MS),
          });
          const ours = push ?? this.fullEntries().map((e) => e.signed);
          push = undefined;
          this.absorb((await requestGossip(stream, ours, this.digests())).announcements);
        } catch (error) {
          stream?.abort(error as Error); // the next beat or refresh tries again
        }
      } while (this.again);
    })().finally(() => {
      this.exchanging = undefined;
    });
    return this.exchanging;
  }

  async heartbeat(): Promise<void> {
    await this.announce(false);
    await Promise.allSettled([
      this.exchange(),
      this.libp2p.services.ping.ping(this.hub!, { signal: AbortSignal.timeout(TIMEOUT_MS) }),
      this.challengeNode(),
    ]);
  }

  /** Peers challenge every attested peer each heartbeat, the node under test included. */
  async challengeNode(): Promise<void> {
    const first = this.known.get(endpointIdFromPeerId(this.hub!) ?? '')?.signed;
    if (!first) return;
    const blob = fromBinary(PeerAnnouncementSchema, first.announcement).hardwareAttestationBlob;
    if (!blob) return;
    const key = parseStatement(blob).attestation.sePublicKey;
    let ok = false;
    try {
      const stream = await this.libp2p.dialProtocol(this.hub!, PROTOCOL_ATTEST, {
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      ok = await challengePeer(toByteStream(stream), key);
    } catch {
      ok = false;
    }
    if (ok) stats.challengesOfNodeOk++;
    else stats.challengesOfNodeFailed++;
  }

  /** Re-sign every `ms` from a random phase; 0 stops refreshing. */
  setRefresh(ms: number): void {
    clearTimeout(this.refreshTimer);
    clearInterval(this.refreshTimer);
    if (ms <= 0) return;
    const refresh = async () => {
      stats.refreshes++;
      await this.sign();
      const news = this.own ? [this.own] : [];
      await this.exchange(news);
      // In a full mesh every member learns the change (from this host directly) and, content
      // having changed, pushes that news to all its peers: the node included.
      for (const host of hosts) if (host !== this) void host.exchange(news);
    };
    this.refreshTimer = setTimeout(() => {
      void refresh();
      this.refreshTimer = setInterval(() => void refresh(), ms);
    }, Math.random() * ms);
  }

  /** Says goodbye like a leaving node (leaving=true reaches the node), then stops. */
  async stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    clearTimeout(this.refreshTimer);
    await this.announce(true);
    await Promise.race([this.exchange(), new Promise((r) => setTimeout(r, 2_000))]);
    await this.libp2p.stop();
  }
}

const hosts: Host[] = [];
let stopping: Promise<void> | undefined;
function stopAll(): void {
  stopping ??= Promise.allSettled(hosts.map((h) => h.stop())).then(() => process.exit(0));
}
process.once('SIGTERM', stopAll);
process.once('SIGINT', stopAll);

const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  const [command, arg] = line.trim().split(/\s+/);
  if (command === 'refresh') for (const host of hosts) host.setRefresh(Number(arg));
  if (command === 'beat') for (const host of hosts) void host.heartbeat();
  if (command === 'stats') process.stdout.write(`stats ${JSON.stringify(stats)}\n`);
});
commands.on('close', stopAll);

/** The node may refuse a connection while busy: retry a few times. */
async function dialNode(libp2p: Libp2p): Promise<PeerId> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await libp2p.dial(hubAddrs, { signal: AbortSignal.timeout(TIMEOUT_MS) })).remotePeer;
    } catch (error) {
      if (attempt === 10) throw error;
      await new Promise((r) => setTimeout(r, 500 + Math.random() * 1000));
    }
  }
}

// A few at a time: libp2p also caps pending inbound connections (10 by default).
const BATCH = 8;
for (let first = 0; first < PEERS && !stopping; first += BATCH) {
  const batch = Array.from({ length: Math.min(BATCH, PEERS - first) }, (_, k) => Host.start(first + k));
  for (const result of await Promise.allSettled(batch)) {
    if (result.status === 'fulfilled') hosts.push(result.value);
    else process.stderr.write(`swarm: a host failed to start: ${String(result.reason)}\n`);
  }
}
for (const host of hosts) host.setRefresh(Number(values['refresh-ms']));
process.stdout.write(`swarm ready ${hosts.length}\n`);
