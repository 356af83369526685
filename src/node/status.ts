import { ConfigError } from '../errors.ts';
import { postureFromProto } from '../hardening/posture.ts';
import type { SecurityPostureFacts } from '../hardening/types.ts';
import type { MeshService, PeerLink, PeerRecord } from '../mesh/types.ts';
import type { PeerSample } from '../metrics/node-metrics.ts';
import { NodeRole } from '../proto/gen/mesh_pb.js';
import { hostedModels, type ModelPool, type Router } from '../routing/router.ts';
import type { AttestationService, PeerAttestationStatus } from './attestation-service.ts';
import type { NodeConfig } from './config.ts';
import { advertisedInferenceKey } from './host-security.ts';
import type { HostingStatus } from './hosting.ts';
import { VERSION } from './version.ts';

export interface PeerStatus {
  id: string;
  name: string;
  role: string;
  models: string[];
  rttMs: number | null;
  version: string;
  connected: boolean;
  transitive: boolean;
  /** How this node reaches the peer: direct, relayed (via which relay) or transitive, and the address in use. */
  link: PeerLink;
  lastSeenMs: number;
  e2e: { capable: boolean; inferencePublicKey: string | null };
  attestation: PeerAttestationStatus | null;
  posture: SecurityPostureFacts | null;
  /** Whether this node's policy refuses to send this host requests (never for non-hosts). */
  policy: { refused: boolean; reason: string | null };
  /** What the peer announced about its machine (hosts only). */
  hardware: PeerHardware | null;
}

export interface PeerHardware {
  gpuKind: string;
  gpuNames: string[];
  vramBytes: number;
  memoryBytes: number;
  cpuCores: number;
}

export interface StatusReport {
  node: {
    id: string;
    name: string;
    role: string;
    version: string;
    meshId: string;
    models: { name: string; contextLength: number | null; hosts: string[] }[];
    /** The invite token; null while the node has no dialable address, or for a caller without the console credential. */
    token: string | null;
    addresses: string[];
    /** Why nodes elsewhere could not dial this one, with the fix (--announce); null when they can. */
    reachability: string | null;
    policy: { requireEncryption: boolean; requireAttestedHosts: boolean };
    e2e: { enabled: boolean; inferencePublicKey: string | null };
    attestation: {
      keyStorage: string | null;
      keyFingerprint: string | null;
      /** This host's attestation key (base64), for other operators' pinnedKeys. */
      publicKey: string | null;
      statementAt: string | null;
    };
    posture: SecurityPostureFacts;
    /** GPU, memory, CPU and the hosted models' runtime; null on a node that hosts nothing. */
    hosting: HostingStatus | null;
  };
  peers: PeerStatus[];
  /** Pooling, per model: every host with its slots and load as this node sees them. */
  models: ModelPool[];
}

export function roleName(role: NodeRole): string {
  return (NodeRole[role] ?? 'UNSPECIFIED').toLowerCase();
}

/** GET /api/status (SPEC §3): this node and every peer, with E2E / attestation / posture. */
export function buildStatusReport(input: {
  config: NodeConfig;
  mesh: MeshService;
  router: Router;
  attestation: AttestationService;
  posture: SecurityPostureFacts;
  role: NodeRole;
  hosting?: () => HostingStatus;
}): StatusReport {
  const { config, mesh, router, attestation } = input;
  const self = attestation.selfStatus();
  return {
    node: {
      id: mesh.endpointId,
      name: config.name,
      role: roleName(input.role),
      version: VERSION,
      meshId: mesh.meshId,
      models: router
        .listModels()
        .map((m) => ({ name: m.id, contextLength: m.contextLength ?? null, hosts: m.hosts })),
      token: inviteTokenOrNull(mesh),
      addresses: mesh.addresses(),
      reachability: mesh.reachabilityProblem() ?? null,
      policy: {
        requireEncryption: config.requireEncryption,
        requireAttestedHosts: config.requireAttestedHosts,
      },
      e2e: { enabled: config.e2e, inferencePublicKey: self.inferencePublicKey ?? null },
      attestation: {
        keyStorage: self.keyStorage ?? null,
        keyFingerprint: self.keyFingerprint ?? null,
        publicKey: self.publicKey ?? null,
        statementAt: self.statementAt ?? null,
      },
      posture: input.posture,
      hosting: input.hosting?.() ?? null,
    },
    peers: mesh.peers().map((peer) => {
      const a = peer.announcement;
      const key = advertisedInferenceKey(peer);
      return {
        id: peer.endpointId,
        name: a.name,
        role: roleName(a.role),
        models: hostedModels(peer),
        rttMs: peer.rttMs ?? null,
        version: a.version,
        connected: peer.connected,
        transitive: peer.transitive,
        link: mesh.link(peer.endpointId),
        lastSeenMs: peer.lastSeenMs,
        e2e: { capable: key !== undefined, inferencePublicKey: key ? (a.inferencePublicKey ?? null) : null },
        attestation: attestation.peerStatus(peer.endpointId) ?? null,
        posture: a.securityPosture ? postureFromProto(a.securityPosture) : null,
        policy: policyVerdict(router, peer),
        hardware: a.hardware
          ? {
              gpuKind: a.hardware.gpuKind,
              gpuNames: a.hardware.gpuNames,
              vramBytes: Number(a.vramBytes),
              memoryBytes: Number(a.hardware.memoryBytes),
              cpuCores: a.hardware.cpuCores,
            }
          : null,
      };
    }),
    models: router.pools(),
  };
}

function policyVerdict(router: Router, peer: PeerRecord): PeerStatus['policy'] {
  const refusal = hostedModels(peer).length > 0 ? router.refusal(peer) : undefined;
  return { refused: refusal !== undefined, reason: refusal?.reason ?? null };
}

/** Each peer's tier and link, for the mesh_llm_peers gauge. */
export function peerSamples(report: StatusReport): PeerSample[] {
  return report.peers.map((p) => ({ tier: p.attestation?.tier ?? 'none', link: linkKind(p) }));
}

/** The peer's link report (direct, relayed, transitive) where the mesh gives one. */
function linkKind(peer: PeerStatus): string {
  const reported = (peer as { link?: { kind?: string } }).link?.kind;
  if (reported) return reported;
  if (!peer.connected) return peer.transitive ? 'transitive' : 'disconnected';
  return 'direct';
}

/** No dialable address yet (e.g. waiting for a relay reservation) is a state to show, not a failure. */
function inviteTokenOrNull(mesh: MeshService): string | null {
  try {
    return mesh.inviteToken();
  } catch (error) {
    if (error instanceof ConfigError) return null;
    throw error;
  }
}
