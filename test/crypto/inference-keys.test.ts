import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sealRequest } from '../../src/crypto/envelope.ts';
import {
  decodeInferencePublicKey,
  InferenceKeyring,
  type InferencePublicKeyInfo,
} from '../../src/crypto/inference-keys.ts';
import { ReplayGuard } from '../../src/crypto/replay-guard.ts';
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
  it('remembers keys for the window and then forgets them', () => {
    const clock = fakeClock();
    const guard = new ReplayGuard({ windowMs: 1000, futureSkewMs: 0, now: clock.now });
    const a = Buffer.alloc(32, 1);
    guard.checkAndRemember(a);
    assert.ok(guard.has(a));
    assert.throws(() => guard.checkAndRemember(a), isE2E('replay'));
    clock.advance(1001);
    assert.ok(!guard.has(a));
    guard.checkAndRemember(Buffer.alloc(32, 2)); // prunes a
    assert.equal(guard.size, 1);
  });

  it('is bounded: refuses (fails closed) rather than forgetting live entries', () => {
    const clock = fakeClock();
    const guard = new ReplayGuard({ windowMs: 1000, futureSkewMs: 0, maxEntries: 3, now: clock.now });
    for (let i = 0; i < 3; i++) guard.checkAndRemember(Buffer.alloc(32, i));
    assert.throws(() => guard.checkAndRemember(Buffer.alloc(32, 9)), isE2E('overloaded'));
    assert.throws(() => guard.checkAndRemember(Buffer.alloc(32, 0)), isE2E('replay'));
    clock.advance(1001);
    guard.checkAndRemember(Buffer.alloc(32, 9));
    assert.equal(guard.size, 1);
  });
});
