/**
 * Strict standard base64 (RFC 4648 §4, padded). Buffer.from(s, 'base64') silently skips bad
 * characters and accepts URL-safe ones; on the wire we accept only the canonical encoding.
 */

/**
 * Decodes canonical padded standard base64, or returns undefined. Re-encoding and comparing
 * rejects every non-canonical form at once (bad or URL-safe characters, whitespace, missing
 * padding, non-zero trailing bits) and is much faster than a regex on megabyte strings.
 */
export function decodeBase64Strict(text: string): Buffer | undefined {
  if (text.length % 4 !== 0) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Length of the padded base64 text of `byteLength` bytes. */
export function base64Length(byteLength: number): number {
  return Math.ceil(byteLength / 3) * 4;
}
