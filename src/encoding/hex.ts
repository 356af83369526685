/** Lower-case hex of `bytes`, read in place (no copy of the bytes first). */
export function encodeHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
