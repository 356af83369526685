/**
 * Feeds random bytes and random mutations of valid envelopes and response streams to the
 * parsers. The only acceptable outcomes are success or an E2EError: never another exception,
 * never a hang. Seeded, so a failure names the case that reproduces it.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { openRequest, sealRequest } from '../../src/crypto/envelope.ts';
import { E2EError } from '../../src/crypto/errors.ts';
import { InferenceKeyring } from '../../src/crypto/inference-keys.ts';
import { ReplayGuard } from '../../src/crypto/replay-guard.ts';
import { openResponse, ResponseOpener, ResponseSealer } from '../../src/crypto/response-frames.ts';
import { fakeClock, prng, stamped } from './fixtures.ts';

const CASES = 2500;
type Rng = ReturnType<typeof prng>;

function mutate(rng: Rng, input: Uint8Array, donor: Uint8Array): Buffer {
  let bytes = Buffer.from(input);
  const rounds = 1 + rng.int(3);
  for (let r = 0; r < rounds; r++) {
    const at = bytes.byteLength === 0 ? 0 : rng.int(bytes.byteLength);
    switch (rng.int(6)) {
      case 0: // bit flip
        if (bytes.byteLength > 0) bytes[at]! ^= 1 << rng.int(8);
        break;
      case 1: // truncation
        bytes = bytes.subarray(0, at);
        break;
      case 2: // insertion of random bytes
        bytes = Buffer.concat([bytes.subarray(0, at), rng.bytes(1 + rng.int(16)), bytes.subarray(at)]);
        break;
      case 3: {
        // splice: a slice of another valid input replaces a slice of this one
        const from = rng.int(donor.byteLength);
        const piece = donor.subarray(from, from + 1 + rng.int(64));
        bytes = Buffer.concat([bytes.subarray(0, at), piece, bytes.subarray(at + rng.int(64))]);
        break;
      }
      case 4: // deletion
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + rng.int(8))]);
        break;
      default: // overwrite a byte with an interesting value
        if (bytes.byteLength > 0) bytes[at] = [0, 0xff, 0x7f, 0x80, 0xe1, 0x22, 0x3d][rng.int(7)]!;
    }
  }
  return bytes;
}

/** Runs fn; returns 'ok' or the E2EError code; fails the test on any other exception. */
function expectOnlyE2E(label: string, fn: () => void): string {
  try {
    fn();
    return 'ok';
  } catch (error) {
    if (!(error instanceof E2EError)) {
      assert.fail(`${label}: non-E2EError thrown: ${error instanceof Error ? error.stack : String(error)}`);
    }
    return error.code;
  }
}

function tally(counts: Map<string, number>, outcome: string): void {
  counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
}

function rejectedCount(counts: Map<string, number>): number {
  return [...counts].reduce((sum, [code, n]) => (code === 'ok' ? sum : sum + n), 0);
}

describe('fuzz', () => {
  const clock = fakeClock();
  const keyring = new InferenceKeyring({ now: clock.now });
  after(() => keyring.destroy());

  it(`openRequest survives ${CASES} random and mutated envelopes`, () => {
    const rng = prng(0xc0ffee);
    const pk = keyring.current().publicKey;
    const valid = [0, 1, 2, 3].map((i) => sealRequest(stamped(clock.now(), 'y'.repeat(i * 40)), pk).envelope);
    const counts = new Map<string, number>();
    for (let i = 0; i < CASES; i++) {
      const base = valid[rng.int(valid.length)]!;
      let input: Uint8Array;
      if (i % 10 === 0) input = rng.bytes(rng.int(300));
      else if (i % 10 === 1) input = Buffer.concat([Uint8Array.of(0xe1), rng.bytes(rng.int(300))]);
      else if (i % 10 === 2) {
        // Authentic envelope around a mutated HTTP request: exercises the x-mesh-sent-at parser.
        input = sealRequest(mutate(rng, stamped(clock.now()), stamped(clock.now() - 1)), pk).envelope;
      } else if (i % 10 === 3) {
        // Well-formed JSON and base64 around a mutated ciphertext: exercises authentication.
        const json = JSON.parse(Buffer.from(base.subarray(1)).toString());
        const ct = mutate(rng, Buffer.from(json.ciphertext, 'base64'), base);
        input = Buffer.from(
          `\xe1${JSON.stringify({ ...json, ciphertext: ct.toString('base64') })}`,
          'latin1',
        );
      } else input = mutate(rng, base, valid[rng.int(valid.length)]!);
      const guard = new ReplayGuard({ now: clock.now });
      const outcome = expectOnlyE2E(`request case ${i}`, () => {
        const { session } = openRequest(input, {
          keyring,
          replayGuard: guard,
          now: clock.now,
          maxPlaintextBytes: 4096,
        });
        session.dispose();
      });
      tally(counts, outcome);
    }
    // Nearly every mutation must be caught (a few, e.g. JSON whitespace, are harmless), and the
    // mutations must reach every layer: framing, JSON/base64 and authentication.
    assert.ok(rejectedCount(counts) > CASES * 0.9, JSON.stringify([...counts]));
    console.log(`request fuzz outcomes: ${JSON.stringify(Object.fromEntries(counts))}`);
    for (const code of ['bad_magic', 'malformed_envelope', 'decrypt_failed', 'stale']) {
      assert.ok((counts.get(code) ?? 0) > 10, `too few ${code}: ${JSON.stringify([...counts])}`);
    }
  });

  it(`ResponseOpener survives ${CASES} random and mutated frame streams, fed in random chunks`, () => {
    const rng = prng(0xbadf00d);
    const counts = new Map<string, number>();
    for (let i = 0; i < CASES; i++) {
      const { envelope, session } = sealRequest(stamped(clock.now()), keyring.current().publicKey);
      const { session: hostSession } = openRequest(envelope, {
        keyring,
        replayGuard: new ReplayGuard({ now: clock.now }),
        now: clock.now,
      });
      const sealer = new ResponseSealer(hostSession, { maxFrameDataBytes: 64 });
      const parts = [sealer.header()];
      for (let f = rng.int(4); f > 0; f--) parts.push(sealer.data(rng.bytes(rng.int(100))));
      parts.push(rng.int(8) === 0 ? sealer.error('boom') : sealer.end());
      const valid = Buffer.concat(parts);
      let input: Uint8Array;
      if (i % 10 === 0) input = rng.bytes(rng.int(300));
      else if (i % 10 === 1) input = Buffer.concat([valid.subarray(0, 33), rng.bytes(rng.int(300))]);
      else if (i % 10 === 2 || i % 10 === 3) {
        // Whole-frame damage: drop, duplicate or swap authentic frames.
        const frames = parts.slice(1);
        const a = rng.int(frames.length);
        const b = rng.int(frames.length);
        const op = rng.int(3);
        if (op === 0) frames.splice(a, 1);
        else if (op === 1) frames.splice(a, 0, frames[b]!);
        else [frames[a], frames[b]] = [frames[b]!, frames[a]!];
        input = Buffer.concat([parts[0]!, ...frames]);
      } else input = mutate(rng, valid, valid);
      const outcome = expectOnlyE2E(`response case ${i}`, () => {
        const opener = new ResponseOpener(session);
        for (let offset = 0; offset < input.byteLength; ) {
          const size = 1 + rng.int(80);
          opener.push(input.subarray(offset, offset + size));
          offset += size;
        }
        opener.finish();
      });
      session.dispose();
      tally(counts, outcome);
    }
    assert.ok(rejectedCount(counts) > CASES * 0.9, JSON.stringify([...counts]));
    for (const code of ['key_mismatch', 'decrypt_failed', 'truncated', 'out_of_order', 'missing_end']) {
      assert.ok((counts.get(code) ?? 0) > 10, `too few ${code}: ${JSON.stringify([...counts])}`);
    }
    console.log(`response fuzz outcomes: ${JSON.stringify(Object.fromEntries(counts))}`);
  });

  it('openResponse only ever rejects with E2EError', async () => {
    const rng = prng(0x5eed);
    for (let i = 0; i < 300; i++) {
      const { envelope, session } = sealRequest(stamped(clock.now()), keyring.current().publicKey);
      const { session: hostSession } = openRequest(envelope, {
        keyring,
        replayGuard: new ReplayGuard({ now: clock.now }),
        now: clock.now,
      });
      const sealer = new ResponseSealer(hostSession);
      const valid = Buffer.concat([sealer.header(), sealer.data(rng.bytes(50)), sealer.end()]);
      const input = mutate(rng, valid, valid);
      async function* source() {
        for (let offset = 0; offset < input.byteLength; offset += 17)
          yield input.subarray(offset, offset + 17);
      }
      try {
        for await (const _ of openResponse(source(), session)) {
          // drain
        }
      } catch (error) {
        assert.ok(error instanceof E2EError, `case ${i}: ${String(error)}`);
      }
      assert.ok(session.disposed);
    }
  });
});
