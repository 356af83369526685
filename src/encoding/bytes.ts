/**
 * A Buffer over the same memory as `bytes` (no copy), for Buffer's methods (toString, indexOf,
 * equals, subarray as Buffer) on a plain Uint8Array, another typed array, or a view into a larger
 * buffer.
 */
export function bufferView(bytes: ArrayBufferView): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A byte count for people: 1.5 GiB, 640.0 KiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
