/** Shared helpers for the crypto tests (not a test file itself). */
import assert from 'node:assert/strict';
import { openRequest, sealRequest, stampSentAt } from '../../src/crypto/envelope.ts';
import { E2EError, type E2EErrorCode } from '../../src/crypto/errors.ts';
import { InferenceKeyring } from '../../src/crypto/inference-keys.ts';
import { ReplayGuard } from '../../src/crypto/replay-guard.ts';

export const T0 = 1_800_000_000_000;

/** A settable clock shared by keyring, guard and openRequest. */
export function fakeClock(start = T0): {
  now: () => number;
  set(ms: number): void;
  advance(ms: number): void;
} {
  let t = start;
  return {
    now: () => t,
    set(ms) {
      t = ms;
    },
    advance(ms) {
      t += ms;
    },
  };
}

export function httpRequest(body = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'): Buffer {
  const bodyBytes = Buffer.from(body);
  return Buffer.concat([
    Buffer.from(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: mesh\r\ncontent-type: application/json\r\ncontent-length: ${bodyBytes.byteLength}\r\n\r\n`,
    ),
    bodyBytes,
  ]);
}

export function stamped(nowMs: number, body?: string): Uint8Array {
  return stampSentAt(httpRequest(body), nowMs);
}

export interface Host {
  clock: ReturnType<typeof fakeClock>;
  keyring: InferenceKeyring;
  guard: ReplayGuard;
  open(envelope: Uint8Array, maxPlaintextBytes?: number): ReturnType<typeof openRequest>;
  destroy(): void;
}

export function makeHost(options: { graceMs?: number } = {}): Host {
  const clock = fakeClock();
  const keyring = new InferenceKeyring({ now: clock.now, graceMs: options.graceMs });
  const guard = new ReplayGuard({ now: clock.now });
  return {
    clock,
    keyring,
    guard,
    open: (envelope, maxPlaintextBytes) =>
      openRequest(envelope, { keyring, replayGuard: guard, now: clock.now, maxPlaintextBytes }),
    destroy: () => keyring.destroy(),
  };
}

/** A full request exchange: returns both sessions. */
export function exchange(host: Host, plaintext: Uint8Array = stamped(host.clock.now())) {
  const { envelope, session: sender } = sealRequest(plaintext, host.keyring.current().publicKey);
  const { plaintext: opened, session: hostSession } = host.open(envelope);
  return { envelope, sender, hostSession, opened };
}

export function isE2E(code: E2EErrorCode) {
  return (error: unknown) => {
    assert.ok(error instanceof E2EError, `expected E2EError, got ${String(error)}`);
    assert.equal(error.code, code, `expected code ${code}, got ${error.code}: ${error.message}`);
    return true;
  };
}

/**
 * Yields each part as a fresh copy, as a wire delivers bytes: the response opener decrypts in
 * place, and a test that sends one frame twice must not hand it the already-opened bytes.
 */
export async function* chunksOf(...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield Uint8Array.from(part);
}

export async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Deterministic PRNG (xorshift32) so fuzz failures are reproducible from the seed. */
export function prng(seed: number): { next(): number; int(max: number): number; bytes(n: number): Buffer } {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
  return {
    next,
    int: (max) => Math.floor(next() * max),
    bytes(n) {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
      return out;
    },
  };
}
