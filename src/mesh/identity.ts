import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  generateKeyPair,
  privateKeyFromProtobuf,
  privateKeyToProtobuf,
  publicKeyFromRaw,
} from '@libp2p/crypto/keys';
import type { PeerId, PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id';
import { encodeHex } from '../encoding/hex.ts';
import { ConfigError } from '../errors.ts';
import { writeFileAtomic } from '../files/atomic-write.ts';
import type { EndpointId } from './types.ts';

/** File holding the libp2p Ed25519 private key (protobuf-encoded), mode 0600. */
export const IDENTITY_FILE = 'identity.key';

/** The node's Ed25519 identity: libp2p key, peer id and endpoint id (hex of the public key). */
export interface MeshIdentity {
  readonly privateKey: PrivateKey;
  readonly peerId: PeerId;
  readonly endpointId: EndpointId;
}

export function identityFromPrivateKey(privateKey: PrivateKey): MeshIdentity {
  if (privateKey.type !== 'Ed25519') throw new ConfigError('the node identity key must be Ed25519');
  return {
    privateKey,
    peerId: peerIdFromPrivateKey(privateKey),
    endpointId: Buffer.from(privateKey.publicKey.raw).toString('hex'),
  };
}

export async function generateIdentity(): Promise<MeshIdentity> {
  return identityFromPrivateKey(await generateKeyPair('Ed25519'));
}

/**
 * Loads the identity from `dataDir/identity.key`, creating it (mode 0600) on first run.
 * A key file readable by others is tightened to 0600 rather than trusted as is.
 */
export async function loadOrCreateIdentity(dataDir: string): Promise<MeshIdentity> {
  const file = join(dataDir, IDENTITY_FILE);
  let bytes: Buffer | undefined;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError(`cannot read identity key ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (bytes !== undefined) {
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0) await chmod(file, 0o600);
    try {
      return identityFromPrivateKey(privateKeyFromProtobuf(bytes));
    } catch (err) {
      throw new ConfigError(`identity key ${file} is corrupt or not an Ed25519 key`, { cause: err });
    }
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const identity = await generateIdentity();
  // A crash never leaves a truncated key behind.
  await writeFileAtomic(file, privateKeyToProtobuf(identity.privateKey));
  return identity;
}

const HEX_ID = /^[0-9a-f]{64}$/;

export function isEndpointId(value: string): boolean {
  return HEX_ID.test(value);
}

export function endpointIdFromBytes(bytes: Uint8Array): EndpointId {
  return encodeHex(bytes);
}

export function endpointIdToBytes(endpointId: EndpointId): Uint8Array {
  if (!isEndpointId(endpointId)) throw new TypeError('endpoint id must be 64 lowercase hex characters');
  return new Uint8Array(Buffer.from(endpointId, 'hex'));
}

const PEER_ID_CACHE_SIZE = 4096;
const peerIds = new Map<EndpointId, PeerId>();

/**
 * libp2p peer id for an endpoint id (Ed25519 public keys are inlined in the peer id). Memoized:
 * building one parses the key and encodes a multihash, and stream opens ask for the same few.
 */
export function peerIdFromEndpointId(endpointId: EndpointId): PeerId {
  const known = peerIds.get(endpointId);
  if (known !== undefined) return known;
  const peerId = peerIdFromPublicKey(publicKeyFromRaw(endpointIdToBytes(endpointId)));
  if (peerIds.size >= PEER_ID_CACHE_SIZE) peerIds.clear();
  peerIds.set(endpointId, peerId);
  return peerId;
}

/** Endpoint id of a libp2p peer id, or undefined when it is not an Ed25519 peer id. */
export function endpointIdFromPeerId(peerId: PeerId | string): EndpointId | undefined {
  const id = typeof peerId === 'string' ? peerIdFromString(peerId) : peerId;
  if (id.type !== 'Ed25519' || id.publicKey === undefined) return undefined;
  return endpointIdFromBytes(id.publicKey.raw);
}
