/** Lower-case hex of `bytes`, read in place (no copy of the bytes first). */
import { bufferView } from './bytes.ts';
export function encodeHex(bytes: Uint8Array): string {
  return bufferView(bytes).toString('hex');
}
