/** What the console concludes from a status report: links, security verdicts, badges. */
import { present, shortId } from './format.ts';
import type { LinkInfo, Peer, Posture } from './types.ts';

export type LinkKind = 'direct' | 'relayed' | 'transitive' | 'offline';

export interface Link {
  kind: LinkKind;
  /** The relay's endpoint id (or name) when the node reports it. */
  via?: string;
  address?: string;
}

/** A peer's link: net-core's `link` report when present, else what `connected`/`transitive` say. */
export function linkOf(peer: Peer): Link {
  const raw = peer.link;
  if (typeof raw === 'string') return { kind: normalizeKind(raw) };
  if (raw && typeof raw === 'object') {
    const info = raw as LinkInfo;
    return {
      kind: normalizeKind(info.kind ?? info.type ?? ''),
      via: info.via ?? info.relay ?? undefined,
      address: info.address ?? info.remoteAddr ?? undefined,
    };
  }
  if (peer.connected === true) return { kind: 'direct' };
  return { kind: peer.transitive === true ? 'transitive' : 'offline' };
}

function normalizeKind(kind: string): LinkKind {
  const k = kind.toLowerCase();
  if (k.startsWith('relay')) return 'relayed';
  if (k.startsWith('direct')) return 'direct';
  if (k.startsWith('trans') || k === 'via-mesh' || k === 'gossip') return 'transitive';
  return 'offline';
}

export const LINK_TEXT: Record<LinkKind, string> = {
  direct: 'Direct libp2p connection (TCP/QUIC, Noise-encrypted) between this node and the peer.',
  relayed:
    'Connected through a circuit relay: the relay forwards the Noise-encrypted connection and cannot read it.',
  transitive:
    'Known from gossip only, no connection of our own: requests are forwarded by a connected peer (sealed when the host has E2E).',
  offline: 'Announced earlier but not reachable right now.',
};

export type Tone = 'ok' | 'warn' | 'bad' | 'info' | 'muted';

export interface Badge {
  key: string;
  label: string;
  tone: Tone;
  /** What the badge means for this peer, shown on hover and in the legend. */
  title: string;
}

export const TIER_TEXT: Record<string, string> = {
  none: 'No attestation statement: nothing is proven about this peer’s software, posture or keys.',
  'self-signed':
    'A software key signs the statement: proves the inference key and posture claims come from the key pinned on first contact, not that hardware protects that key.',
  'hardware-claimed':
    'The signing key is held by a TPM or Secure Enclave, as the peer claims: the key cannot be copied off that machine (no vendor certificate chain checked).',
  'hardware-rooted':
    'The signing key chains to a hardware vendor root this node trusts: the statement comes from genuine TPM hardware.',
};

const TIER_TONE: Record<string, Tone> = {
  none: 'muted',
  'self-signed': 'warn',
  'hardware-claimed': 'ok',
  'hardware-rooted': 'ok',
};

export const PLAINTEXT_TEXT: Record<string, string> = {
  'in-process':
    'Prompts and answers are decrypted only inside the host’s mesh-llm process (llama.cpp runs in it).',
  'external-backend':
    'The host decrypts, then hands plaintext to a backend server on its machine (e.g. llama-server): plaintext leaves the mesh-llm process.',
  none: 'Serves no model: never holds the plaintext of anyone’s request.',
};

function hosts(peer: Peer): boolean {
  return (peer.models?.length ?? 0) > 0 || peer.role === 'host';
}

/** The security badges for one peer, in display order. */
export function peerBadges(peer: Peer): Badge[] {
  const badges: Badge[] = [];
  const isHost = hosts(peer);
  if (isHost && peer.e2e?.capable === true) {
    badges.push({
      key: 'e2e',
      label: 'E2E sealed',
      tone: 'ok',
      title:
        'Requests are sealed to this host’s inference key: only the host process can open them, not relays or forwarding peers.',
    });
  } else if (isHost) {
    badges.push({
      key: 'e2e',
      label: 'no E2E',
      tone: 'warn',
      title:
        'This host advertises no inference key: requests to it are protected hop by hop only, and a forwarding peer could read them.',
    });
  }
  const a = peer.attestation;
  const tier = a?.tier ?? 'none';
  if (isHost || tier !== 'none') {
    badges.push({
      key: 'tier',
      label: tier,
      tone: TIER_TONE[tier] ?? 'muted',
      title: `${TIER_TEXT[tier] ?? 'Unknown tier.'}${a?.keyStorage ? ` Key storage: ${a.keyStorage}.` : ''}${a?.pinned ? ' Key pinned (TOFU).' : ''}`,
    });
  }
  if (a && present(a.keyFingerprint)) {
    badges.push(
      a.live === true
        ? {
            key: 'live',
            label: 'live',
            tone: 'ok',
            title:
              'The attestation key answered a fresh challenge recently: the statement is not a replay from a machine that is gone.',
          }
        : {
            key: 'live',
            label: 'not live',
            tone: 'bad',
            title: 'The attestation key has not answered recent liveness challenges.',
          },
    );
  }
  const posture = postureBadge(peer.posture);
  if (posture) badges.push(posture);
  const boundary = peer.posture?.plaintextBoundary;
  if (boundary && (isHost || boundary !== 'none')) {
    badges.push({
      key: 'plaintext',
      label:
        boundary === 'in-process'
          ? 'plaintext in-process'
          : boundary === 'external-backend'
            ? 'plaintext → backend'
            : `plaintext ${boundary}`,
      tone: boundary === 'in-process' ? 'ok' : boundary === 'external-backend' ? 'warn' : 'muted',
      title: PLAINTEXT_TEXT[boundary] ?? 'Where this host decrypts requests.',
    });
  }
  if (present(a?.failureReason)) {
    badges.push({
      key: 'failure',
      label: 'verification failed',
      tone: 'bad',
      title: String(a?.failureReason),
    });
  }
  if (peer.policy?.refused === true) {
    badges.push({
      key: 'policy',
      label: 'refused by policy',
      tone: 'bad',
      title: `This node’s policy refuses to send requests here: ${peer.policy.reason ?? 'see policy'}`,
    });
  } else if (isHost && present(a?.policyShortfall)) {
    badges.push({
      key: 'policy',
      label: 'below policy (not enforced)',
      tone: 'info',
      title: `${a?.policyShortfall}. This node does not enforce attestation (--require-attested-hosts is off), so requests may still go here.`,
    });
  }
  return badges;
}

function postureBadge(p: Posture | null | undefined): Badge | undefined {
  if (!p) return undefined;
  const facts: [string, boolean | null | undefined][] = [
    ['debugger blocked', p.debuggerBlocked],
    ['core dumps off', p.coreDumpsDisabled],
    ['inspector closed', p.inspectorClosed],
    ['environment clean', p.environmentClean],
  ];
  const known = facts.filter(([, v]) => v !== undefined && v !== null);
  if (known.length === 0) return undefined;
  const met = known.filter(([, v]) => v === true);
  const detail = known.map(([name, v]) => `${v ? '✓' : '✗'} ${name}`).join(', ');
  const hash = p.binaryHash ? ` Binary ${p.binaryHash.slice(0, 12)}.` : '';
  return {
    key: 'posture',
    label: met.length === known.length ? 'hardened' : `posture ${met.length}/${known.length}`,
    tone: met.length === known.length ? 'ok' : 'warn',
    title: `Process posture as the peer reports it (signed into its statement when it has one): ${detail}.${hash}`,
  };
}

/** The legend: one line per badge kind, what it means. */
export const LEGEND: { label: string; tone: Tone; text: string }[] = [
  {
    label: 'E2E sealed',
    tone: 'ok',
    text: 'Requests are encrypted to the host’s inference key; relays and forwarders see ciphertext only.',
  },
  { label: 'self-signed', tone: 'warn', text: TIER_TEXT['self-signed']! },
  { label: 'hardware-claimed', tone: 'ok', text: TIER_TEXT['hardware-claimed']! },
  { label: 'hardware-rooted', tone: 'ok', text: TIER_TEXT['hardware-rooted']! },
  {
    label: 'live',
    tone: 'ok',
    text: 'The attestation key answered a fresh liveness challenge within the last heartbeats.',
  },
  {
    label: 'hardened',
    tone: 'ok',
    text: 'Debugger attach blocked, core dumps off, inspector closed, clean environment.',
  },
  { label: 'plaintext in-process', tone: 'ok', text: PLAINTEXT_TEXT['in-process']! },
  { label: 'plaintext → backend', tone: 'warn', text: PLAINTEXT_TEXT['external-backend']! },
  {
    label: 'below policy (not enforced)',
    tone: 'info',
    text: 'The attestation policy would rank this host lower, but this node does not require attested hosts.',
  },
  {
    label: 'refused by policy',
    tone: 'bad',
    text: 'This node’s policy refuses this host: no request is sent to it.',
  },
];

export function displayHost(id: string, peers: Peer[], selfName: string): string {
  if (id === 'local') return `${selfName} (this node)`;
  const peer = peers.find((p) => p.id === id);
  return peer?.name || shortId(id);
}

/**
 * A peer's role as drawn: the announced role, except that a peer other peers are relayed
 * through is shown as the relay it is (relays announce no role of their own).
 */
export function roleOf(peer: Peer, peers: Peer[]): string {
  const id = peer.id;
  if (id && peers.some((p) => linkOf(p).via === id)) return 'relay';
  return peer.role ?? 'node';
}
