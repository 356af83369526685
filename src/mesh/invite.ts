import { multiaddr } from '@multiformats/multiaddr';
import { ConfigError } from '../errors.ts';

/**
 * Invite token payload: base64url of JSON `{v:1, mesh, addrs}`, or for a mesh with an owner key
 * `{v:2, mesh, addrs, owner, invite}`: the owner's public key (hex) and an owner-signed invite
 * (base64url OwnerSigned, docs/membership.md) that the owner node exchanges for a certificate.
 */
export interface InviteToken {
  v: 1 | 2;
  mesh: string;
  addrs: string[];
  owner?: string;
  invite?: string;
}

const MAX_TOKEN_CHARS = 16 * 1024;
const MAX_ADDRS = 32;
const MESH_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function isValidMeshId(meshId: string): boolean {
  return MESH_ID.test(meshId);
}

export function encodeInviteToken(
  meshId: string,
  addrs: string[],
  owned?: { owner: string; invite: string },
): string {
  if (!isValidMeshId(meshId)) throw new ConfigError('mesh id must be 1-128 characters of [A-Za-z0-9._:-]');
  const payload: InviteToken = owned
    ? { v: 2, mesh: meshId, addrs: addrs.slice(0, MAX_ADDRS), ...owned }
    : { v: 1, mesh: meshId, addrs: addrs.slice(0, MAX_ADDRS) };
  return Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
}

/**
 * Parses and validates a token. Every failure is a ConfigError whose message says what
 * is wrong without echoing the token (it is a credential for joining the mesh).
 */
export function decodeInviteToken(token: string): InviteToken {
  const text = typeof token === 'string' ? token.trim() : '';
  if (text === '') throw new ConfigError('invite token is empty');
  if (text.length > MAX_TOKEN_CHARS) throw new ConfigError('invite token is too long');
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(text)) {
    throw new ConfigError(
      'invite token is not valid: expected the base64url text printed by `mesh-llm invite`',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw new ConfigError('invite token is not valid: it does not decode (was it copied completely?)');
  }
  if (typeof parsed !== 'object' || parsed === null)
    throw new ConfigError('invite token is not valid: no payload');
  const { v, mesh, addrs, owner, invite } = parsed as Record<string, unknown>;
  if (v !== 1 && v !== 2)
    throw new ConfigError(`invite token version ${String(v)} is not supported (expected 1 or 2)`);
  if (v === 2 && (typeof owner !== 'string' || !/^[0-9a-f]{64}$/.test(owner))) {
    throw new ConfigError('invite token has no valid mesh owner key');
  }
  if (v === 2 && (typeof invite !== 'string' || !/^[A-Za-z0-9_-]{1,4096}$/.test(invite))) {
    throw new ConfigError('invite token has no valid signed invite');
  }
  if (typeof mesh !== 'string' || !isValidMeshId(mesh))
    throw new ConfigError('invite token has no valid mesh id');
  if (!Array.isArray(addrs) || addrs.length === 0) throw new ConfigError('invite token lists no addresses');
  if (addrs.length > MAX_ADDRS) throw new ConfigError('invite token lists too many addresses');
  const checked: string[] = [];
  for (const addr of addrs) {
    if (typeof addr !== 'string') throw new ConfigError('invite token has a non-text address');
    let ma: ReturnType<typeof multiaddr>;
    try {
      ma = multiaddr(addr);
    } catch {
      throw new ConfigError('invite token has an address that is not a multiaddr');
    }
    if (ma.getComponents().at(-1)?.name !== 'p2p') {
      throw new ConfigError('invite token has an address without a /p2p/ peer id');
    }
    checked.push(ma.toString());
  }
  return v === 2
    ? { v: 2, mesh, addrs: checked, owner: owner as string, invite: invite as string }
    : { v: 1, mesh, addrs: checked };
}
