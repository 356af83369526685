/**
 * The mesh transport's per-message cipher (Noise ChaChaPoly), side by side in one run:
 * @chainsafe/libp2p-noise's default (node:crypto Cipher per message ≥ 1200 bytes, WebAssembly
 * below) against the libsodium implementation the mesh plugs in (src/mesh/noise-crypto.ts).
 * µs per seal and per open, at message sizes a request and its answer produce.
 *
 *   node bench/noise-cipher.ts [--quick]
 */
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { noiseCrypto } from '../src/mesh/noise-crypto.ts';
import { printTable } from './lib/load.ts';

const quick = process.argv.includes('--quick');
const SIZES = [100, 1_000, 1_300, 4_096, 16_384, 65_519];
const key = Buffer.alloc(32, 7);
const nonce = Buffer.alloc(12, 1);
const ad = new Uint8Array(0);

/** µs per call, after a warm-up, over at least `minMs`. */
function usPerCall(fn: () => void, minMs = quick ? 100 : 400): number {
  for (let i = 0; i < 200; i++) fn();
  let calls = 0;
  const started = performance.now();
  while (performance.now() - started < minMs) {
    for (let i = 0; i < 100; i++) fn();
    calls += 100;
  }
  return ((performance.now() - started) * 1000) / calls;
}

function measure(impl: ICryptoInterface, size: number): { seal: number; open: number } {
  const plaintext = Buffer.alloc(size, 3);
  const sealed = impl.chaCha20Poly1305Encrypt(plaintext, nonce, ad, key).subarray();
  return {
    seal: usPerCall(() => impl.chaCha20Poly1305Encrypt(plaintext, nonce, ad, key)),
    open: usPerCall(() => impl.chaCha20Poly1305Decrypt(sealed, nonce, ad, key)),
  };
}

const rows = SIZES.map((size) => {
  const library = measure(defaultCrypto, size);
  const sodium = measure(noiseCrypto, size);
  return [
    size,
    library.seal,
    sodium.seal,
    library.seal / sodium.seal,
    library.open,
    sodium.open,
    library.open / sodium.open,
  ];
});
printTable(
  'Noise transport cipher — µs per message (default = @chainsafe/libp2p-noise, sodium = mesh-llm)',
  ['bytes', 'seal default', 'seal sodium', 'seal ×', 'open default', 'open sodium', 'open ×'],
  rows,
);
