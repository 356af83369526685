/**
 * The console's view of GET /api/status and /api/traffic. Every field is optional: the page
 * renders what the node reports and leaves out what an older or newer node does not send.
 */
export interface Posture {
  debuggerBlocked?: boolean;
  coreDumpsDisabled?: boolean;
  inspectorClosed?: boolean;
  environmentClean?: boolean;
  secureBootEnabled?: boolean | null;
  plaintextBoundary?: string;
  binaryHash?: string;
  platform?: string;
}

export interface PeerAttestation {
  tier?: string;
  ok?: boolean;
  keyStorage?: string | null;
  keyFingerprint?: string | null;
  verifiedAt?: string;
  pinned?: boolean;
  live?: boolean;
  failureReason?: string | null;
  policyShortfall?: string | null;
}

/** net-core's link report: a kind, the relay it goes through, the remote address. */
export interface LinkInfo {
  kind?: string;
  type?: string;
  via?: string | null;
  relay?: string | null;
  address?: string | null;
  remoteAddr?: string | null;
}

export interface Peer {
  id?: string;
  name?: string;
  role?: string;
  models?: unknown[];
  rttMs?: number | null;
  version?: string;
  connected?: boolean;
  transitive?: boolean;
  link?: string | LinkInfo | null;
  e2e?: { capable?: boolean; inferencePublicKey?: string | null };
  attestation?: PeerAttestation | null;
  posture?: Posture | null;
  policy?: { refused?: boolean; reason?: string | null };
  hardware?: Hardware | null;
}

/** hosting's machine report for a peer. */
export interface Hardware {
  gpuKind?: string;
  gpuNames?: string[];
  vramBytes?: number;
  memoryBytes?: number;
  cpuCores?: number;
}

/** hosting's report for this node. */
export interface HostingStatus {
  gpu?: {
    requested?: string;
    kind?: string;
    names?: string[];
    vramBytes?: number;
    fallbackReason?: string | null;
  } | null;
  memoryBytes?: number;
  cpuCores?: number;
  models?: {
    name?: string;
    backend?: string;
    ready?: boolean;
    contextLength?: number | null;
    gpuLayers?: number | null;
    layerCount?: number | null;
  }[];
  refused?: { name?: string; reason?: string }[];
}

export interface ModelStatus {
  name?: string;
  contextLength?: number | null;
  hosts?: unknown[];
  [field: string]: unknown;
}

export interface NodeStatus {
  id?: string;
  name?: string;
  role?: string;
  version?: string;
  models?: ModelStatus[];
  token?: string | null;
  addresses?: string[];
  policy?: { requireEncryption?: boolean; requireAttestedHosts?: boolean };
  e2e?: { enabled?: boolean; inferencePublicKey?: string | null };
  attestation?: { keyStorage?: string | null; keyFingerprint?: string | null; statementAt?: string | null };
  posture?: Posture;
  hosting?: HostingStatus | null;
}

/** pooling's per-model view: every host with its slots and load. */
export interface ModelPool {
  name?: string;
  waiting?: number;
  hosts?: {
    id?: string;
    slots?: number | null;
    inFlight?: number;
    queued?: number;
    servedPerMinute?: number | null;
  }[];
}

export interface Status {
  node?: NodeStatus;
  peers?: Peer[];
  models?: ModelPool[];
}

export type { ModelTraffic, TrafficReport as Traffic } from '../../src/metrics/traffic-shape.ts';
