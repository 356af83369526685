/**
 * A Buffer over the same memory as `bytes` (no copy), for Buffer's methods (toString, indexOf,
 * equals, subarray as Buffer) on a plain Uint8Array, another typed array, or a view into a larger
 * buffer.
 */
export function bufferView(bytes: ArrayBufferView): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
