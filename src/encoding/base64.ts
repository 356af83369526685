/**
 * Strict standard base64 (RFC 4648 §4, padded). Buffer.from(s, 'base64') silently skips bad
 * characters and accepts URL-safe ones; on the wire we accept only the canonical encoding.
 */
import { bufferView } from './bytes.ts';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const EQUALS = 0x3d;
/** Character code → 6-bit value, -1 outside the standard alphabet. */
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/**
 * Decodes canonical padded standard base64, or returns undefined. Node's decoder skips what it
 * does not understand (bad characters, whitespace, a '=' before the end), so any of those leaves
 * the output shorter than the text's length promises; what is left to refuse is the URL-safe
 * alphabet (which Node reads as + and /) and non-zero bits after the last byte. Checking that
 * costs no second string, unlike re-encoding and comparing (test/encoding/base64.test.ts holds
 * the two to the same answers).
 */
export function decodeBase64Strict(text: string): Buffer | undefined {
  const length = text.length;
  if (length % 4 !== 0) return undefined;
  if (text.includes('-') || text.includes('_')) return undefined;
  const padding = text.charCodeAt(length - 1) !== EQUALS ? 0 : text.charCodeAt(length - 2) !== EQUALS ? 1 : 2;
  const bytes = Buffer.from(text, 'base64');
  if (bytes.byteLength !== (length / 4) * 3 - padding) return undefined;
  if (padding > 0) {
    const last = VALUE[text.charCodeAt(length - padding - 1)] ?? -1;
    if (last < 0 || (last & (padding === 1 ? 0x03 : 0x0f)) !== 0) return undefined;
  }
  return bytes;
}

export function encodeBase64(bytes: Uint8Array): string {
  return bufferView(bytes).toString('base64');
}

/** Length of the padded base64 text of `byteLength` bytes. */
export function base64Length(byteLength: number): number {
  return Math.ceil(byteLength / 3) * 4;
}
