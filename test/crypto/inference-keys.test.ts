import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sealRequest } from '../../src/crypto/envelope.ts';
import {
  decodeInferencePublicKey,
  InferenceKeyring,
  type InferencePublicKeyInfo,
} from '../../src/crypto/inference-keys.ts';
import { ReplayGuard } from '../../src/crypto/replay-guard.ts';
import { mulberry32 } from '../helpers/prng.ts';
import { fakeClock, isE2E, makeHost, stamped } from './fixtures.ts';

describe('InferenceKeyring', () => {
  it('exposes the current public key as raw bytes and standard base64', () => {
    const keyring = new InferenceKeyring();
    try {
      const info = keyring.current();
      assert.equal(info.publicKey.byteLength, 32);
      assert.equal(Buffer.from(info.publicKeyBase64, 'base64').compare(Buffer.from(info.publicKey)), 0);
      assert.deepEqual(decodeInferencePublicKey(info.publicKeyBase64), info.publicKey);
      assert.equal(keyring.secretFor(info.publicKey)?.byteLength, 32);
      assert.equal(keyring.secretFor(new Uint8Array(32)), undefined);
      assert.equal(keyring.secretFor(new Uint8Array(5)), undefined);
      // current() hands out copies: mutating one cannot change the keyring.
      info.publicKey[0]! ^= 0xff;
      assert.notDeepEqual(keyring.current().publicKey, info.publicKey);
    } finally {
      keyring.destroy();
    }
  });

  it('keeps the old key for the grace period after a rotation, then forgets it', () => {
    const h = makeHost({ graceMs: 10 * 60_000 });
    try {
      const oldKey = h.keyring.current().publicKey;
      const rotations: InferencePublicKeyInfo[] = [];
      h.keyring.onRotate((info) => rotations.push(info));
      const early = sealRequest(stamped(h.clock.now()), oldKey).envelope;
      const late = sealRequest(stamped(h.clock.now() + 9 * 60_000), oldKey).envelope;
      const after = sealRequest(stamped(h.clock.now() + 11 * 60_000), oldKey).envelope;

      const info = h.keyring.rotate();
      assert.equal(rotations.length, 1);
      assert.deepEqual(rotations[0]!.publicKey, info.publicKey);
      assert.notDeepEqual(info.publicKey, oldKey);
      assert.equal(h.keyring.activePublicKeys().length, 2);

      assert.deepEqual(h.open(early).session.hostPublicKey, oldKey); // right after rotation
      h.clock.advance(9 * 60_000);
      assert.deepEqual(h.open(late).session.hostPublicKey, oldKey); // still inside grace
      h.clock.advance(2 * 60_000);
      assert.throws(() => h.open(after), isE2E('decrypt_failed')); // grace over
      assert.equal(h.keyring.secretFor(oldKey), undefined);
      assert.equal(h.keyring.activePublicKeys().length, 1);
      // The new key works.
      const fresh = sealRequest(stamped(h.clock.now()), info.publicKey).envelope;
      assert.deepEqual(h.open(fresh).session.hostPublicKey, info.publicKey);
    } finally {
      h.destroy();
    }
  });

  it('a throwing rotate listener does not stop rotation or other listeners; unsubscribe works', () => {
    const keyring = new InferenceKeyring();
    try {
      let calls = 0;
      keyring.onRotate(() => {
        throw new Error('listener bug');
      });
      const off = keyring.onRotate(() => {
        calls++;
      });
      keyring.rotate();
      off();
      keyring.rotate();
      assert.equal(calls, 1);
    } finally {
      keyring.destroy();
    }
  });

  it('rotates on its schedule with an unref timer, and stops', async () => {
    const keyring = new InferenceKeyring({ rotationMs: 20, graceMs: 10 });
    try {
      const first = keyring.current().publicKeyBase64;
      const rotated = new Promise<InferencePublicKeyInfo>((resolve) => keyring.onRotate(resolve));
      keyring.start();
      keyring.start(); // idempotent
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no rotation')), 5000);
      });
      const info = await Promise.race([rotated, timeout]).finally(() => clearTimeout(timer));
      assert.notEqual(info.publicKeyBase64, first);
      keyring.stop();
      const stoppedAt = keyring.current().publicKeyBase64;
      await new Promise((resolve) => setTimeout(resolve, 60));
      assert.equal(keyring.current().publicKeyBase64, stoppedAt);
    } finally {
      keyring.destroy();
    }
  });

  it('destroy frees every secret and makes the keyring unusable', () => {
    const clock = fakeClock();
    const keyring = new InferenceKeyring({ now: clock.now });
    const pk = keyring.current().publicKey;
    const secret = keyring.secretFor(pk)!;
    keyring.destroy();
    assert.equal(secret.byteLength, 0);
    assert.equal(keyring.secretFor(pk), undefined);
    assert.deepEqual(keyring.activePublicKeys(), []);
    assert.throws(() => keyring.current(), isE2E('unknown_key'));
    keyring.destroy();
  });

  it('validates its options', () => {
    assert.throws(() => new InferenceKeyring({ rotationMs: 0 }), RangeError);
    assert.throws(() => new InferenceKeyring({ graceMs: -1 }), RangeError);
  });
});

describe('decodeInferencePublicKey', () => {
  const key = Buffer.alloc(32, 0x5a);
  it('accepts canonical standard base64 of 32 bytes', () => {
    assert.deepEqual(Buffer.from(decodeInferencePublicKey(key.toString('base64'))), key);
  });
  it('rejects everything else with invalid_key', () => {
    const b64 = key.toString('base64'); // "WlpaWlpa...Wlo="
    const cases: unknown[] = [
      '',
      Buffer.alloc(31).toString('base64'),
      Buffer.alloc(33).toString('base64'),
      b64.slice(0, -1), // missing padding
      `${b64.slice(0, -2)}p=`, // non-zero trailing bits
      `${b64.slice(0, 10)}-${b64.slice(11)}`, // url-safe alphabet
      `${b64.slice(0, 10)} ${b64.slice(11)}`,
      `${b64}\n`,
      'A'.repeat(10_000),
      42,
      undefined,
    ];
    for (const value of cases) {
      assert.throws(() => decodeInferencePublicKey(value as string), isE2E('invalid_key'), String(value));
    }
  });
});

describe('ReplayGuard', () => {
  it('remembers keys for the window (at most one 5 % slice longer) and then forgets them', () => {
    const clock = fakeClock();
    const guard = new ReplayGuard({ windowMs: 1000, futureSkewMs: 0, now: clock.now });
    const a = Buffer.alloc(32, 1);
    guard.checkAndRemember(a);
    assert.ok(guard.has(a));
    assert.throws(() => guard.checkAndRemember(a), isE2E('replay'));
    clock.advance(999);
    assert.ok(guard.has(a), 'still inside the window');
    clock.advance(1000 / 20 + 2);
    assert.ok(!guard.has(a));
    guard.checkAndRemember(Buffer.alloc(32, 2));
    assert.equal(guard.size, 1);
  });

  it('is bounded: refuses (fails closed) rather than forgetting live entries', () => {
    const clock = fakeClock();
    const guard = new ReplayGuard({ windowMs: 1000, futureSkewMs: 0, maxEntries: 3, now: clock.now });
    for (let i = 0; i < 3; i++) guard.checkAndRemember(Buffer.alloc(32, i));
    assert.throws(() => guard.checkAndRemember(Buffer.alloc(32, 9)), isE2E('overloaded'));
    assert.throws(() => guard.checkAndRemember(Buffer.alloc(32, 0)), isE2E('replay'));
    clock.advance(1051);
    guard.checkAndRemember(Buffer.alloc(32, 9));
    assert.equal(guard.size, 1);
  });

  it('one sender is held to its share, so it cannot lock the others out; its keys count down as they expire', () => {
    const clock = fakeClock();
    const guard = new ReplayGuard({ windowMs: 1000, futureSkewMs: 0, maxEntries: 8, now: clock.now });
    assert.equal(guard.maxEntriesPerSender, 2, 'a quarter of the cap by default');
    const key = (n: number) => Buffer.alloc(32, n);
    guard.checkAndRemember(key(1), clock.now(), 'flooder');
    guard.checkAndRemember(key(2), clock.now(), 'flooder');
    assert.throws(() => guard.checkAndRemember(key(3), clock.now(), 'flooder'), isE2E('overloaded'));
    assert.equal(guard.heldBy('flooder'), 2);
    guard.checkAndRemember(key(4), clock.now(), 'friend');
    guard.checkAndRemember(key(5)); // unnamed senders only count toward the total
    assert.throws(() => guard.checkAndRemember(key(1), clock.now(), 'friend'), isE2E('replay'));
    clock.advance(600);
    guard.checkAndRemember(key(6), clock.now(), 'friend');
    clock.advance(500); // the first slice's keys have expired, the second's not yet
    assert.equal(guard.heldBy('flooder'), 0);
    assert.equal(guard.heldBy('friend'), 1);
    guard.checkAndRemember(key(3), clock.now(), 'flooder');
    assert.throws(
      () => new ReplayGuard({ maxEntriesPerSender: 0 }),
      RangeError,
      'a share of nothing is a configuration error',
    );
  });

  it('never forgets a key before its window and skew have passed, whatever the timing (seeded)', () => {
    const random = mulberry32(7);
    const clock = fakeClock();
    const guard = new ReplayGuard({ windowMs: 10_000, futureSkewMs: 2_000, now: clock.now });
    const accepted: { key: Buffer; atMs: number }[] = [];
    for (let i = 0; i < 3000; i++) {
      clock.advance(Math.floor(random() * 40));
      const key = Buffer.from(Array.from({ length: 32 }, () => Math.floor(random() * 256)));
      guard.checkAndRemember(key);
      accepted.push({ key, atMs: clock.now() });
      const probe = accepted[Math.floor(random() * accepted.length)]!;
      if (clock.now() < probe.atMs + 12_000) assert.ok(guard.has(probe.key), `key ${i} forgotten early`);
      else assert.ok(clock.now() >= probe.atMs + 12_000);
    }
    for (const { key, atMs } of accepted) {
      if (clock.now() < atMs + 12_000) assert.throws(() => guard.checkAndRemember(key), isE2E('replay'));
    }
  });

  it('a clock that steps back keeps keys longer, never shorter', () => {
    const clock = fakeClock();
    const guard = new ReplayGuard({ windowMs: 1000, futureSkewMs: 0, now: clock.now });
    clock.advance(500);
    guard.checkAndRemember(Buffer.alloc(32, 1));
    clock.advance(-400);
    guard.checkAndRemember(Buffer.alloc(32, 2));
    clock.advance(1300); // 1000 ms after the second key was accepted by the stepped-back clock
    assert.ok(guard.has(Buffer.alloc(32, 2)), 'filed under the later slice');
  });

  it('holds a million keys across many slices: each found again, none confused with a fresh one', () => {
    const clock = fakeClock();
    const guard = new ReplayGuard({ now: clock.now });
    const key = Buffer.alloc(32);
    const random = mulberry32(11);
    const lows = new Uint32Array(1_000_000);
    for (let i = 0; i < lows.length; i++) {
      lows[i] = Math.floor(random() * 2 ** 32);
      key.writeUInt32LE(i, 0);
      key.writeUInt32LE(lows[i]!, 4);
      guard.checkAndRemember(key, clock.now() + Math.floor(i / 5)); // 200 s: 14 slices
    }
    assert.equal(guard.size, 1_000_000);
    const later = clock.now() + 200_001;
    for (let i = 0; i < lows.length; i += 997) {
      key.writeUInt32LE(i, 0);
      key.writeUInt32LE(lows[i]!, 4);
      assert.ok(guard.has(key, later), `key ${i} remembered`);
    }
    for (let i = 0; i < 1000; i++) {
      key.writeUInt32LE(2_000_000 + i, 0);
      assert.ok(!guard.has(key, later), 'a key never seen is not a replay');
    }
  });
});
