/**
 * The precomputed-key path (boxBeforeNm + secretbox) must be byte-for-byte NaCl crypto_box: these
 * tests compare it with sodium-native's crypto_box_easy / crypto_box_open_easy on random keys,
 * nonces and lengths, and check that request envelopes and response frames still interoperate
 * with a peer that uses plain crypto_box (the wire format is unchanged).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import sodium from 'sodium-native';
import { E2E_MAGIC, sealRequest } from '../../src/crypto/envelope.ts';
import {
  FRAME_TYPE_DATA,
  FRAME_TYPE_END,
  openResponse,
  ResponseOpener,
  ResponseSealer,
} from '../../src/crypto/response-frames.ts';
import { HostSession, SenderSession } from '../../src/crypto/sessions.ts';
import {
  boxBeforeNm,
  boxOpenAfterNmInto,
  boxSealAfterNmInto,
  ephemeralBoxKey,
  wipe,
} from '../../src/crypto/sodium.ts';
import { chunksOf, collect, type Host, isE2E, makeHost, prng, stamped } from './fixtures.ts';

const hosts: Host[] = [];
afterEach(() => {
  for (const h of hosts.splice(0)) h.destroy();
});

function keypair(): { pk: Buffer; sk: Buffer } {
  const pk = Buffer.alloc(32);
  const sk = Buffer.alloc(32);
  sodium.crypto_box_keypair(pk, sk);
  return { pk, sk };
}

function box(m: Uint8Array, n: Uint8Array, pk: Uint8Array, sk: Uint8Array): Buffer {
  const out = Buffer.alloc(m.byteLength + 16);
  sodium.crypto_box_easy(out, Buffer.from(m), Buffer.from(n), Buffer.from(pk), Buffer.from(sk));
  return out;
}

function boxOpen(c: Uint8Array, n: Uint8Array, pk: Uint8Array, sk: Uint8Array): Buffer | undefined {
  const out = Buffer.alloc(c.byteLength - 16);
  const ok = sodium.crypto_box_open_easy(
    out,
    Buffer.from(c),
    Buffer.from(n),
    Buffer.from(pk),
    Buffer.from(sk),
  );
  return ok ? out : undefined;
}

const hex = (s: string) => Buffer.from(s, 'hex');

/** Points of order 1, 2, 4, 8 (and non-canonical encodings of them): X25519 gives all zeros. */
const LOW_ORDER_POINTS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
];

describe('crypto_box precomputed key (beforenm / afternm)', () => {
  it('matches the NaCl known-answer vector (tests/box.c: alice, bob → firstkey)', () => {
    const aliceSk = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const alicePk = hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    const bobSk = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    const bobPk = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const expected = '1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389';
    const a = boxBeforeNm(bobPk, aliceSk);
    const b = boxBeforeNm(alicePk, bobSk);
    assert.equal(a.toString('hex'), expected);
    assert.equal(b.toString('hex'), expected);
    wipe(a);
    wipe(b);
  });

  it('secretbox(m, n, beforenm(pk, sk)) equals crypto_box_easy(m, n, pk, sk), and each opens the other', () => {
    const rng = prng(0xa11ce);
    for (let i = 0; i < 300; i++) {
      const alice = keypair();
      const bob = keypair();
      // Lengths cross the 32-byte first block and 64-byte Salsa20 block boundaries.
      const m = i < 4 ? Buffer.alloc([0, 1, 32, 64][i]!) : rng.bytes(rng.int(i % 3 === 0 ? 5000 : 200));
      const n = Buffer.alloc(24);
      sodium.randombytes_buf(n);
      const kAlice = boxBeforeNm(bob.pk, alice.sk);
      const kBob = boxBeforeNm(alice.pk, bob.sk);
      assert.deepEqual(kAlice, kBob, 'the key is symmetric');

      const afterNm = Buffer.alloc(m.byteLength + 16);
      boxSealAfterNmInto(afterNm, m, n, kAlice);
      const classic = box(m, n, bob.pk, alice.sk);
      assert.deepEqual(afterNm, classic, `case ${i}: ciphertexts differ`);

      assert.deepEqual(boxOpen(afterNm, n, alice.pk, bob.sk), m, 'crypto_box_open_easy opens afternm output');
      const opened = Buffer.alloc(m.byteLength);
      assert.ok(boxOpenAfterNmInto(opened, classic, n, kBob));
      assert.deepEqual(opened, m, 'afternm opens crypto_box_easy output');

      // Authentication still binds key, nonce and ciphertext.
      const tampered = Buffer.from(classic);
      tampered[rng.int(tampered.byteLength)]! ^= 1 << rng.int(8);
      assert.equal(boxOpenAfterNmInto(Buffer.alloc(m.byteLength), tampered, n, kBob), false);
      const otherNonce = Buffer.from(n);
      otherNonce[rng.int(24)]! ^= 1;
      assert.equal(boxOpenAfterNmInto(Buffer.alloc(m.byteLength), classic, otherNonce, kBob), false);
      wipe(kAlice);
      wipe(kBob);
    }
  });

  it('ephemeralBoxKey gives a key a crypto_box peer agrees with, keeping no secret', () => {
    const host = keypair();
    const { ephemeralPublicKey, sharedKey } = ephemeralBoxKey(host.pk);
    const hostSide = boxBeforeNm(ephemeralPublicKey, host.sk);
    assert.deepEqual(hostSide, sharedKey);
    wipe(hostSide);
    const n = Buffer.alloc(24, 7);
    const m = Buffer.from('hello');
    const c = Buffer.alloc(m.byteLength + 16);
    boxSealAfterNmInto(c, m, n, sharedKey);
    assert.deepEqual(boxOpen(c, n, ephemeralPublicKey, host.sk), m);
    const again = ephemeralBoxKey(host.pk);
    assert.notDeepEqual(again.ephemeralPublicKey, ephemeralPublicKey, 'fresh per call');
    wipe(again.sharedKey);
    wipe(sharedKey);
    assert.ok(
      sharedKey.every((byte) => byte === 0),
      'wipe zeroes the pooled key slot',
    );
  });

  it('a key slot wiped twice is handed out once: two sessions never share a precomputed key', () => {
    const host = keypair();
    const first = ephemeralBoxKey(host.pk).sharedKey;
    wipe(first);
    wipe(first); // a second release must not queue the slot twice
    const a = ephemeralBoxKey(host.pk).sharedKey;
    const b = ephemeralBoxKey(host.pk).sharedKey;
    assert.ok(a.buffer !== b.buffer || a.byteOffset !== b.byteOffset, 'distinct slots');
    wipe(a);
    wipe(b);
  });

  it('refuses low-order public keys and wrong-sized keys with E2EError invalid_key, like crypto_box', () => {
    const { sk } = keypair();
    for (const point of LOW_ORDER_POINTS) {
      assert.throws(
        () => box(Buffer.from('x'), Buffer.alloc(24), hex(point), sk),
        'crypto_box_easy refuses it too',
      );
      assert.throws(() => boxBeforeNm(hex(point), sk), isE2E('invalid_key'));
      assert.throws(() => ephemeralBoxKey(hex(point)), isE2E('invalid_key'));
      assert.throws(() => sealRequest(Buffer.from('x'), hex(point)), isE2E('invalid_key'));
    }
    assert.throws(() => boxBeforeNm(Buffer.alloc(31, 9), sk), isE2E('invalid_key'));
    assert.throws(() => boxBeforeNm(keypair().pk, Buffer.alloc(33)), isE2E('invalid_key'));
  });
});

describe('wire compatibility with plain crypto_box peers', () => {
  /** Splits a response stream into its header and the (nonce, box) of each frame. */
  function parseFrames(stream: Buffer): { header: Buffer; frames: { nonce: Buffer; box: Buffer }[] } {
    const header = stream.subarray(0, 33);
    const frames: { nonce: Buffer; box: Buffer }[] = [];
    for (let at = 33; at < stream.byteLength; ) {
      const length = stream.readUInt32LE(at);
      frames.push({
        nonce: stream.subarray(at + 4, at + 28),
        box: stream.subarray(at + 28, at + 4 + length),
      });
      at += 4 + length;
    }
    return { header, frames };
  }

  function payload(type: number, seq: number, data: string): Buffer {
    const out = Buffer.alloc(9 + Buffer.byteLength(data));
    out[0] = type;
    out.writeBigUInt64BE(BigInt(seq), 1);
    out.write(data, 9);
    return out;
  }

  it('response frames from ResponseSealer open with crypto_box_open_easy(pk_host, sk_ephemeral)', () => {
    const hostKeys = keypair();
    const sender = keypair();
    const session = new HostSession({
      senderEphemeralPublicKey: sender.pk,
      hostPublicKey: hostKeys.pk,
      sentAtMs: 0,
      sharedKey: boxBeforeNm(sender.pk, hostKeys.sk),
    });
    const sealer = new ResponseSealer(session, { maxFrameDataBytes: 100 });
    const body = 'x'.repeat(250);
    const stream = Buffer.concat([sealer.header(), sealer.data(Buffer.from(body)), sealer.end()]);
    const { header, frames } = parseFrames(stream);
    assert.deepEqual(header, Buffer.concat([Buffer.from([E2E_MAGIC]), hostKeys.pk]));
    assert.equal(frames.length, 4);
    const expected = [
      payload(FRAME_TYPE_DATA, 0, body.slice(0, 100)),
      payload(FRAME_TYPE_DATA, 1, body.slice(100, 200)),
      payload(FRAME_TYPE_DATA, 2, body.slice(200)),
      payload(FRAME_TYPE_END, 3, ''),
    ];
    frames.forEach((frame, i) => {
      assert.deepEqual(boxOpen(frame.box, frame.nonce, hostKeys.pk, sender.sk), expected[i], `frame ${i}`);
    });
    assert.ok(session.disposed);
  });

  it('frames sealed with crypto_box_easy(pk_ephemeral, sk_host) open with ResponseOpener', async () => {
    const hostKeys = keypair();
    const sender = keypair();
    const session = new SenderSession({
      ephemeralPublicKey: sender.pk,
      hostPublicKey: hostKeys.pk,
      sharedKey: boxBeforeNm(hostKeys.pk, sender.sk),
    });
    const frame = (p: Buffer) => {
      const nonce = Buffer.alloc(24);
      sodium.randombytes_buf(nonce);
      const sealed = box(p, nonce, sender.pk, hostKeys.sk);
      const length = Buffer.alloc(4);
      length.writeUInt32LE(24 + sealed.byteLength);
      return Buffer.concat([length, nonce, sealed]);
    };
    const parts = [
      Buffer.concat([Buffer.from([E2E_MAGIC]), hostKeys.pk]),
      frame(payload(FRAME_TYPE_DATA, 0, 'data: {"a":1}\n\n')),
      frame(payload(FRAME_TYPE_DATA, 1, 'data: [DONE]\n\n')),
      frame(payload(FRAME_TYPE_END, 2, '')),
    ];
    const opened = await collect(openResponse(chunksOf(...parts), session));
    assert.equal(opened.toString(), 'data: {"a":1}\n\ndata: [DONE]\n\n');
    assert.ok(session.disposed);
  });

  it('a sealRequest envelope opens with crypto_box_open_easy, and a crypto_box envelope with openRequest', async () => {
    const h = makeHost();
    hosts.push(h);
    const hostPk = h.keyring.current().publicKey;
    const hostSk = h.keyring.secretFor(hostPk)!;
    const plaintext = stamped(h.clock.now());

    // Our sender → a plain crypto_box host.
    const { envelope, session } = sealRequest(plaintext, hostPk);
    const json = JSON.parse(Buffer.from(envelope.subarray(1)).toString());
    const ct = Buffer.from(json.ciphertext, 'base64');
    const epk = Buffer.from(json.ephemeral_public_key, 'base64');
    assert.deepEqual(boxOpen(ct.subarray(24), ct.subarray(0, 24), epk, hostSk), Buffer.from(plaintext));
    session.dispose();

    // A plain crypto_box sender → our host, whose response the sender opens with crypto_box too.
    const sender = keypair();
    const nonce = Buffer.alloc(24, 3);
    const sealed = Buffer.concat([nonce, box(plaintext, nonce, hostPk, sender.sk)]);
    const raw = Buffer.from(
      `\xe1${JSON.stringify({ v: 1, ephemeral_public_key: sender.pk.toString('base64'), ciphertext: sealed.toString('base64') })}`,
      'latin1',
    );
    const { plaintext: opened, session: hostSession } = h.open(raw);
    assert.deepEqual(Buffer.from(opened), Buffer.from(plaintext));
    const sealer = new ResponseSealer(hostSession);
    const stream = Buffer.concat([sealer.header(), sealer.data(Buffer.from('ok')), sealer.end()]);
    const { frames } = parseFrames(stream);
    assert.deepEqual(
      boxOpen(frames[0]!.box, frames[0]!.nonce, hostPk, sender.sk),
      payload(FRAME_TYPE_DATA, 0, 'ok'),
    );
  });

  it('a low-order ephemeral key in a request is refused as decrypt_failed, as crypto_box_open refused it', () => {
    const h = makeHost();
    hosts.push(h);
    const ct = Buffer.alloc(24 + 16 + 10);
    for (const point of LOW_ORDER_POINTS) {
      const raw = Buffer.from(
        `\xe1${JSON.stringify({ v: 1, ephemeral_public_key: hex(point).toString('base64'), ciphertext: ct.toString('base64') })}`,
        'latin1',
      );
      // p and p + 1 are not canonical encodings: refused before any X25519, as malformed.
      const canonical = !point.startsWith('ed') && !point.startsWith('ee');
      assert.throws(() => h.open(raw), isE2E(canonical ? 'decrypt_failed' : 'malformed_envelope'));
    }
  });

  it('sealer and opener refuse to work on a session disposed mid-stream (typed, no crash)', () => {
    const h = makeHost();
    hosts.push(h);
    const { envelope, session } = sealRequest(stamped(h.clock.now()), h.keyring.current().publicKey);
    const { session: hostSession } = h.open(envelope);
    const sealer = new ResponseSealer(hostSession);
    const first = sealer.data(Buffer.from('a'));
    hostSession.dispose();
    assert.throws(() => sealer.data(Buffer.from('b')), isE2E('closed'));
    assert.throws(() => hostSession.sharedKey, isE2E('closed'));
    const opener = new ResponseOpener(session);
    session.dispose();
    assert.throws(() => session.sharedKey, isE2E('closed'));
    assert.throws(() => opener.push(first), isE2E('closed'));
  });
});
