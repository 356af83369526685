import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { bufferView } from '../encoding/bytes.ts';
import { AttestationError } from './errors.ts';

/** Uncompressed SEC1 P-256 point: 0x04 || X(32) || Y(32). */
export const P256_POINT_BYTES = 65;
const COORD = 32;

// Importing a point costs about as much as a verification; peers reuse one key for days.
const keyCache = new Map<string, KeyObject>();
const KEY_CACHE_MAX = 256;

/** KeyObject for an uncompressed P-256 point; throws AttestationError('malformed') if it is not on the curve. */
export function publicKeyFromPoint(point: Uint8Array): KeyObject {
  const id = bufferView(point).toString('base64');
  const cached = keyCache.get(id);
  if (cached) return cached;
  const key = importPoint(point);
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string);
  keyCache.set(id, key);
  return key;
}

function importPoint(point: Uint8Array): KeyObject {
  if (point.byteLength !== P256_POINT_BYTES || point[0] !== 0x04) {
    throw new AttestationError('malformed', 'attestation public key is not an uncompressed P-256 point');
  }
  try {
    return createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: Buffer.from(point.subarray(1, 1 + COORD)).toString('base64url'),
        y: Buffer.from(point.subarray(1 + COORD)).toString('base64url'),
      },
      format: 'jwk',
    });
  } catch (cause) {
    throw new AttestationError('malformed', 'attestation public key is not a valid P-256 point', { cause });
  }
}

/** Uncompressed SEC1 point of a P-256 KeyObject (public or private). */
export function pointFromKeyObject(key: KeyObject): Uint8Array {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType !== 'ec' || details?.namedCurve !== 'prime256v1') {
    throw new AttestationError('malformed', 'key is not a P-256 EC key');
  }
  const jwk = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'jwk' });
  const x = Buffer.from(String(jwk.x), 'base64url');
  const y = Buffer.from(String(jwk.y), 'base64url');
  if (x.byteLength !== COORD || y.byteLength !== COORD) {
    throw new AttestationError('malformed', 'P-256 coordinates have the wrong length');
  }
  const out = new Uint8Array(P256_POINT_BYTES);
  out[0] = 0x04;
  out.set(x, 1);
  out.set(y, 1 + COORD);
  return out;
}

/** Verifies a DER ECDSA P-256 signature over SHA-256(data). Never throws; bad input is `false`. */
export function verifyP256(key: KeyObject, data: Uint8Array, signatureDer: Uint8Array): boolean {
  if (signatureDer.byteLength < 8 || signatureDer.byteLength > 72 || signatureDer[0] !== 0x30) return false;
  try {
    return cryptoVerify('sha256', data, { key, dsaEncoding: 'der' }, signatureDer);
  } catch {
    return false;
  }
}

/** Converts r || s (fixed width) to a DER ECDSA-Sig-Value. */
export function rawSignatureToDer(r: Uint8Array, s: Uint8Array): Uint8Array {
  const encodeInt = (value: Uint8Array): number[] => {
    let start = 0;
    while (start < value.byteLength - 1 && value[start] === 0) start++;
    const bytes = Array.from(value.subarray(start));
    if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
    if (bytes.length > 127) throw new AttestationError('malformed', 'ECDSA integer too long');
    return [0x02, bytes.length, ...bytes];
  };
  const body = [...encodeInt(r), ...encodeInt(s)];
  if (body.length > 127) throw new AttestationError('malformed', 'ECDSA signature too long');
  return Uint8Array.from([0x30, body.length, ...body]);
}
