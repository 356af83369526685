import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { answerChallenge, FairChallengeSigner, LivenessTracker } from '../attestation/liveness.ts';
import { PinStore } from '../attestation/pins.ts';
import {
  type AttestationPolicy,
  defaultAttestationPolicy,
  loadAttestationPolicy,
  tierAtLeast,
  untrustedClaim,
} from '../attestation/policy.ts';
import { selectAttestationKeyProvider } from '../attestation/providers/select.ts';
import type { AttestationKeyProvider } from '../attestation/providers/types.ts';
import { buildStatement, encodeStatement, type SignedStatement } from '../attestation/statement.ts';
import { type AttestationVerdict, AttestationVerifierCache, keyFingerprint } from '../attestation/verify.ts';
import { describeError } from '../errors.ts';
import { postureToProto } from '../hardening/posture.ts';
import type { SecurityPostureFacts } from '../hardening/types.ts';
import type { Logger } from '../log.ts';
import { challengePeer, handleAttestStream } from '../mesh/attest-protocol.ts';
import type { MeshService, PeerRecord } from '../mesh/types.ts';
import { PROTOCOL_ATTEST } from '../mesh/types.ts';
import type { SecurityPosture } from '../proto/gen/mesh_pb.js';
import type { NodeConfig } from './config.ts';
import type { PeerTrust } from './host-security.ts';
import { VERSION } from './version.ts';

export interface PeerAttestationStatus {
  tier: string;
  ok: boolean;
  keyStorage: string | null;
  keyFingerprint: string | null;
  verifiedAt: string;
  pinned: boolean;
  /** The key is pinned by the operator in the policy file (what --require-attested-hosts needs). */
  operatorTrusted: boolean;
  /** The attestation key (base64 SEC1 point), for the operator to pin. */
  publicKey: string | null;
  live: boolean;
  /** A verification that failed whatever the policy (bad signature, expired, liveness, ...). */
  failureReason: string | null;
  /** Below what the attestation policy asks (tier, posture, binary hash): a refusal only where
   * this node enforces the policy (--require-attested-hosts). */
  policyShortfall: string | null;
}

/** Verdict codes that are no failed verification: no statement, or one below the local policy. */
const POLICY_CODES = new Set(['missing', 'tier_below_minimum', 'posture', 'binary_hash']);

export interface AttestationService {
  readonly trust: PeerTrust;
  readonly policy: AttestationPolicy;
  /** Field 37 for the local announcement. */
  postureProto(): SecurityPosture;
  /** Field 38: the current signed statement (hosts only). */
  statementBlob(): Uint8Array | undefined;
  selfStatus(): {
    inferencePublicKey?: string;
    keyStorage?: string;
    keyFingerprint?: string;
    /** Base64 SEC1 point: what operators put in pinnedKeys for this host. */
    publicKey?: string;
    statementAt?: string;
  };
  peerStatus(endpointId: string): PeerAttestationStatus | undefined;
  /** Re-sign now (inference key rotated). */
  refresh(): Promise<void>;
  onStatementRefreshed(listener: () => void): void;
  resetPin(endpointId: string): Promise<boolean>;
  /** Start verifying peers and answering/issuing liveness challenges on this mesh. */
  attach(mesh: MeshService): void;
  stop(): Promise<void>;
}

interface PeerEntry {
  verdict: AttestationVerdict;
  /** The announcement the verdict is for; a newer one re-verifies. */
  seq: bigint;
}

/**
 * SPEC §6 for one node: signs and refreshes this host's statement with its attestation key,
 * verifies every peer's statement when its announcement arrives (cached, async), keeps TOFU
 * pins, challenges peers for liveness on connect and each heartbeat, and answers challenges.
 */
export async function startAttestationService(options: {
  config: NodeConfig;
  endpointId: string;
  posture: SecurityPostureFacts;
  hosting: boolean;
  inferenceKey: () => string | undefined;
  logger: Logger;
  now?: () => number;
  /** Told the reason code of each failed verification or liveness challenge (metrics). */
  onFailure?: (code: string) => void;
}): Promise<AttestationService> {
  const { config, logger } = options;
  const now = options.now ?? Date.now;
  const policy = config.attestationPolicyPath
    ? await loadAttestationPolicy(config.attestationPolicyPath)
    : defaultAttestationPolicy();
  const pins = await PinStore.open({ dataDir: config.dataDir });
  const verifier = new AttestationVerifierCache({ policy, pins, clock: now, logger });
  const liveness = new LivenessTracker({ clock: now });
  const peers = new Map<string, PeerEntry>();
  const listeners: (() => void)[] = [];
  const timers: NodeJS.Timeout[] = [];
  const unsubscribers: (() => void)[] = [];
  let mesh: MeshService | undefined;
  let stopped = false;

  // Only a node that serves inference vouches for an inference key.
  const provider: AttestationKeyProvider | undefined =
    options.hosting && config.e2e
      ? await selectAttestationKeyProvider({ choice: config.attestationKey, dataDir: config.dataDir, logger })
      : undefined;
  const hardware = await hardwareFacts();
  let statement: SignedStatement | undefined;
  let statementBlob: Uint8Array | undefined;

  async function sign(): Promise<void> {
    const inferencePublicKey = options.inferenceKey();
    if (!provider || !inferencePublicKey) return;
    statement = await buildStatement(
      {
        ...hardware,
        nodeEndpointId: options.endpointId,
        inferencePublicKey,
        version: VERSION,
        posture: options.posture,
        nowMs: now(),
      },
      provider,
    );
    statementBlob = encodeStatement(statement);
  }
  await sign();
  if (provider) {
    logger.info(
      { keyStorage: provider.kind, keyFingerprint: keyFingerprint(provider.publicKey()) },
      'attestation statement signed',
    );
  }

  async function verifyPeer(peer: PeerRecord): Promise<void> {
    const verdict = await verifier.verify({
      blob: peer.announcement.hardwareAttestationBlob,
      peerEndpointId: peer.endpointId,
      announcedInferenceKey: peer.announcement.inferencePublicKey,
    });
    const previous = peers.get(peer.endpointId);
    if (previous && previous.seq > peer.seq) return; // a newer announcement won the race
    peers.set(peer.endpointId, { verdict, seq: peer.seq });
    // A different attestation key must prove liveness afresh.
    if (previous?.verdict.sePublicKey !== verdict.sePublicKey) liveness.forget(peer.endpointId);
    if (verdict.code && verdict.code !== 'missing' && verdict.code !== 'tier_below_minimum') {
      options.onFailure?.(verdict.code);
      logger.warn({ peer: peer.endpointId.slice(0, 12), reason: verdict.code }, 'peer attestation failed');
    }
    if (verdict.sePublicKey && liveness.state(peer.endpointId) === undefined) void challenge(peer.endpointId);
  }

  /** Peers with a challenge on its way: one at a time each, so a slow signer is not asked twice. */
  const challenging = new Set<string>();

  async function challenge(endpointId: string): Promise<void> {
    if (challenging.has(endpointId)) return;
    challenging.add(endpointId);
    try {
      await challengeOnce(endpointId);
    } finally {
      challenging.delete(endpointId);
    }
  }

  async function challengeOnce(endpointId: string): Promise<void> {
    const key = peers.get(endpointId)?.verdict.sePublicKey;
    if (!mesh || !key || stopped) return;
    // Only a peer we are connected to or that announced itself lately is worth a dial.
    const peer = mesh.peer(endpointId);
    if (!peer || (!peer.connected && now() - peer.lastSeenMs > config.heartbeatMs * 2)) return;
    let ok = false;
    try {
      const stream = await mesh.openStream(endpointId, PROTOCOL_ATTEST, {
        signal: AbortSignal.timeout(10_000),
      });
      ok = await challengePeer(stream, key);
    } catch (error) {
      logger.debug({ peer: endpointId.slice(0, 12), err: describeError(error) }, 'liveness challenge failed');
    }
    liveness.record(endpointId, ok);
    if (!ok && !stopped) options.onFailure?.('liveness');
  }

  function peerStatus(endpointId: string): PeerAttestationStatus | undefined {
    const entry = peers.get(endpointId);
    if (!entry) return undefined;
    const v = entry.verdict;
    const live = liveness.isLive(endpointId);
    const misses = liveness.state(endpointId)?.consecutiveMisses ?? 0;
    return {
      tier: v.tier,
      ok: v.ok,
      keyStorage: v.keyStorage ?? null,
      keyFingerprint: v.keyFingerprint ?? null,
      verifiedAt: new Date(v.verifiedAtMs).toISOString(),
      pinned: v.pinned,
      operatorTrusted: v.operatorTrusted,
      publicKey: v.sePublicKey ?? null,
      live,
      failureReason:
        (v.code && POLICY_CODES.has(v.code) ? null : v.reason) ??
        (v.sePublicKey && !live ? `liveness: ${misses} challenge(s) failed or unanswered` : null),
      policyShortfall: v.code && POLICY_CODES.has(v.code) ? (v.reason ?? v.code) : null,
    };
  }

  const trust: PeerTrust = {
    qualifies(endpointId) {
      const entry = peers.get(endpointId);
      if (!entry) return { ok: false, reason: 'no attestation verified yet' };
      const v = entry.verdict;
      if (!v.ok) return { ok: false, reason: v.reason ?? `tier ${v.tier}` };
      if (!tierAtLeast(v.tier, policy.minimumTier)) {
        return { ok: false, reason: `tier ${v.tier} is below ${policy.minimumTier}` };
      }
      const claim = untrustedClaim(v, policy);
      if (claim) {
        return {
          ok: false,
          reason: `${claim}: to trust it, add "pinnedKeys": {"${endpointId}": "${v.sePublicKey}"} to the --attestation-policy file`,
        };
      }
      if (!liveness.isLive(endpointId))
        return { ok: false, reason: 'attestation key did not answer liveness challenges' };
      return { ok: true };
    },
    rank(endpointId) {
      // Only what this node proved itself earns preference: a claimed tier is no reason to
      // send a host more prompts (a modified node can claim anything).
      const v = peers.get(endpointId)?.verdict;
      return v?.ok && v.tier === 'hardware-rooted' && liveness.isLive(endpointId) ? 1 : 0;
    },
  };

  return {
    trust,
    policy,
    postureProto: () => postureToProto(options.posture),
    statementBlob: () => statementBlob,
    selfStatus: () => ({
      inferencePublicKey: options.inferenceKey(),
      keyStorage: provider?.kind,
      keyFingerprint: provider ? keyFingerprint(provider.publicKey()) : undefined,
      publicKey: provider ? Buffer.from(provider.publicKey()).toString('base64') : undefined,
      statementAt: statement?.attestation.timestamp,
    }),
    peerStatus,
    refresh: sign,
    onStatementRefreshed: (listener) => listeners.push(listener),
    async resetPin(endpointId) {
      const removed = await pins.reset(endpointId);
      liveness.forget(endpointId);
      const peer = mesh?.peer(endpointId);
      if (peer) await verifyPeer(peer);
      return removed;
    },
    attach(target) {
      mesh = target;
      // One signature at a time, peers in turn: a challenge flood delays only the flooder.
      // A peer challenges on connect and once a heartbeat: twice that rate, plus a burst, is ample.
      const signer =
        provider &&
        new FairChallengeSigner((nonce) => answerChallenge(provider, nonce), {
          perPeerIntervalMs: config.heartbeatMs / 2,
          clock: now,
        });
      target.handle(PROTOCOL_ATTEST, (stream, remote) =>
        handleAttestStream(stream, provider, { sign: signer && ((nonce) => signer.answer(remote, nonce)) }),
      );
      unsubscribers.push(
        target.onPeerEvent((event) => {
          if (event.type === 'removed') {
            peers.delete(event.endpointId);
            liveness.forget(event.endpointId);
            return;
          }
          verifyPeer(event.peer).catch((error) =>
            logger.warn({ err: describeError(error) }, 'attestation verification failed unexpectedly'),
          );
        }),
      );
      for (const peer of target.peers()) void verifyPeer(peer);
      const heartbeat = setInterval(() => {
        for (const endpointId of peers.keys()) void challenge(endpointId);
      }, config.heartbeatMs);
      heartbeat.unref();
      timers.push(heartbeat);
      if (provider) {
        const refresh = setInterval(() => {
          sign()
            .then(() => {
              for (const listener of listeners) listener();
            })
            .catch((error) =>
              logger.error({ err: describeError(error) }, 'could not refresh the attestation statement'),
            );
        }, config.attestationRefreshMs);
        refresh.unref();
        timers.push(refresh);
      }
    },
    async stop() {
      stopped = true;
      for (const timer of timers.splice(0)) clearInterval(timer);
      for (const unsubscribe of unsubscribers.splice(0)) unsubscribe();
      await provider?.close?.();
    },
  };
}

/** Descriptive hardware facts for the statement (measured; 'unknown' when not readable). */
async function hardwareFacts(): Promise<{
  chipName: string;
  hardwareModel: string;
  unifiedMemoryBytes: number;
}> {
  const model = await readFile('/sys/devices/virtual/dmi/id/product_name', 'utf8').catch(() => 'unknown');
  return {
    chipName: (cpus()[0]?.model ?? 'unknown').trim().slice(0, 200),
    hardwareModel: model.trim().slice(0, 200) || 'unknown',
    unifiedMemoryBytes: totalmem(),
  };
}
