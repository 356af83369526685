import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  collectEnvelope,
  E2E_MAGIC,
  isEncryptedStream,
  maxEnvelopeBytes,
  openRequest,
  readSentAt,
  sealRequest,
  stampSentAt,
} from '../../src/crypto/envelope.ts';
import { InferenceKeyring } from '../../src/crypto/inference-keys.ts';
import { ReplayGuard } from '../../src/crypto/replay-guard.ts';
import { boxKeypair, isCanonicalPublicKey } from '../../src/crypto/sodium.ts';
import { chunksOf, exchange, type Host, httpRequest, isE2E, makeHost, stamped } from './fixtures.ts';

const hosts: Host[] = [];
function host(options?: { graceMs?: number }): Host {
  const h = makeHost(options);
  hosts.push(h);
  return h;
}
afterEach(() => {
  for (const h of hosts.splice(0)) h.destroy();
});

/** Rebuilds an envelope around a hand-written JSON body. */
function rawEnvelope(json: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([E2E_MAGIC]), Buffer.isBuffer(json) ? json : Buffer.from(json)]);
}

function envelopeJson(envelope: Uint8Array): { v: number; ephemeral_public_key: string; ciphertext: string } {
  return JSON.parse(Buffer.from(envelope.subarray(1)).toString('utf8'));
}

describe('request envelope', () => {
  it('round-trips a request and exposes what the host needs to answer', () => {
    const h = host();
    const plaintext = stamped(h.clock.now());
    const { envelope, sender, hostSession, opened } = exchange(h, plaintext);
    assert.equal(envelope[0], 0xe1);
    assert.ok(isEncryptedStream(envelope[0]!));
    assert.ok(isEncryptedStream(envelope));
    assert.ok(!isEncryptedStream(Buffer.from('POST')));
    assert.deepEqual(Buffer.from(opened), Buffer.from(plaintext));
    assert.deepEqual(hostSession.senderEphemeralPublicKey, sender.ephemeralPublicKey);
    assert.deepEqual(hostSession.hostPublicKey, h.keyring.current().publicKey);
    assert.deepEqual(sender.hostPublicKey, h.keyring.current().publicKey);
    assert.equal(hostSession.sentAtMs, h.clock.now());
    const json = envelopeJson(envelope);
    assert.deepEqual(Object.keys(json), ['v', 'ephemeral_public_key', 'ciphertext']);
    assert.equal(json.v, 1);
    // The model name must not travel in cleartext.
    assert.ok(!Buffer.from(envelope).includes('chat/completions'));
    assert.ok(!Buffer.from(envelope).includes('"model"'));
  });

  it('uses a fresh ephemeral key and nonce per request (forward secrecy)', () => {
    const h = host();
    const plaintext = stamped(h.clock.now());
    const pk = h.keyring.current().publicKey;
    const a = envelopeJson(sealRequest(plaintext, pk).envelope);
    const b = envelopeJson(sealRequest(plaintext, pk).envelope);
    assert.notEqual(a.ephemeral_public_key, b.ephemeral_public_key);
    assert.notEqual(a.ciphertext, b.ciphertext);
    assert.notEqual(a.ciphertext.slice(0, 32), b.ciphertext.slice(0, 32)); // nonces differ
  });

  it('disposing a session wipes its key (and the ephemeral secret is never kept)', () => {
    const h = host();
    const { session } = sealRequest(stamped(h.clock.now()), h.keyring.current().publicKey);
    assert.ok(!('ephemeralSecretKey' in session));
    const key = session.sharedKey;
    assert.equal(key.byteLength, 32);
    session.dispose();
    session.dispose(); // idempotent
    assert.ok(
      key.every((byte) => byte === 0),
      'the key slot was zeroed',
    );
    assert.ok(session.disposed);
    assert.throws(() => session.sharedKey, isE2E('closed'));
  });

  it('fails with decrypt_failed when sealed to another host key', () => {
    const h = host();
    const other = new InferenceKeyring();
    try {
      const { envelope } = sealRequest(stamped(h.clock.now()), other.current().publicKey);
      assert.throws(() => h.open(envelope), isE2E('decrypt_failed'));
    } finally {
      other.destroy();
    }
  });

  it('rejects a host key of the wrong size or of low order', () => {
    const plaintext = stamped(Date.now());
    assert.throws(() => sealRequest(plaintext, new Uint8Array(31)), isE2E('invalid_key'));
    assert.throws(() => sealRequest(plaintext, new Uint8Array(32)), isE2E('invalid_key'));
  });

  it('detects a tampered byte anywhere in the ciphertext', () => {
    const h = host();
    const { envelope } = sealRequest(stamped(h.clock.now()), h.keyring.current().publicKey);
    const json = envelopeJson(envelope);
    const ct = Buffer.from(json.ciphertext, 'base64');
    for (const index of [0, 23, 24, 39, 40, ct.byteLength - 1]) {
      const copy = Buffer.from(ct);
      copy[index]! ^= 0x01;
      const tampered = rawEnvelope(JSON.stringify({ ...json, ciphertext: copy.toString('base64') }));
      assert.throws(() => h.open(tampered), isE2E('decrypt_failed'));
    }
    const epk = Buffer.from(json.ephemeral_public_key, 'base64');
    epk[5]! ^= 0x80;
    const swapped = rawEnvelope(JSON.stringify({ ...json, ephemeral_public_key: epk.toString('base64') }));
    assert.throws(() => h.open(swapped), isE2E('decrypt_failed'));
  });

  it('rejects a replayed envelope but accepts it again never', () => {
    const h = host();
    const { envelope } = sealRequest(stamped(h.clock.now()), h.keyring.current().publicKey);
    h.open(envelope);
    assert.throws(() => h.open(envelope), isE2E('replay'));
    h.clock.advance(60_000);
    assert.throws(() => h.open(envelope), isE2E('replay'));
    h.clock.advance(5 * 60_000); // past the window the envelope is stale rather than a replay
    assert.throws(() => h.open(envelope), isE2E('stale'));
  });

  it('refuses another spelling of an ephemeral key, so a captured envelope cannot be replayed as new', () => {
    const h = host();
    const { envelope } = sealRequest(stamped(h.clock.now()), h.keyring.current().publicKey);
    const json = envelopeJson(envelope);
    h.open(envelope);
    // X25519 ignores bit 255: with it set, the same key (and the same shared secret) is spelled
    // differently, and a guard keyed on bytes would not recognize the envelope.
    const epk = Buffer.from(json.ephemeral_public_key, 'base64');
    epk[31]! |= 0x80;
    const variant = rawEnvelope(JSON.stringify({ ...json, ephemeral_public_key: epk.toString('base64') }));
    assert.throws(() => h.open(variant), isE2E('malformed_envelope'));
  });

  it('knows which X25519 encodings are canonical', () => {
    const key = (first: number, middle: number, last: number) =>
      Buffer.from([first, ...new Array(30).fill(middle), last]);
    assert.ok(isCanonicalPublicKey(key(0, 0, 0)));
    assert.ok(isCanonicalPublicKey(key(0xec, 0xff, 0x7f)), '2^255 - 20, the largest canonical value');
    assert.ok(!isCanonicalPublicKey(key(0xed, 0xff, 0x7f)), '2^255 - 19 = p');
    assert.ok(!isCanonicalPublicKey(key(0xff, 0xff, 0x7f)));
    assert.ok(isCanonicalPublicKey(key(0xff, 0xfe, 0x7f)));
    assert.ok(!isCanonicalPublicKey(key(0, 0, 0x80)), 'bit 255 set');
    assert.ok(!isCanonicalPublicKey(Buffer.alloc(31)));
    for (let i = 0; i < 200; i++) assert.ok(isCanonicalPublicKey(boxKeypair().publicKey));
  });

  it('rejects stale, future-dated and undated requests', () => {
    const h = host();
    const pk = h.keyring.current().publicKey;
    const now = h.clock.now();
    const old = sealRequest(stamped(now - 5 * 60_000 - 1), pk).envelope;
    assert.throws(() => h.open(old), isE2E('stale'));
    const edge = sealRequest(stamped(now - 5 * 60_000), pk).envelope;
    h.open(edge);
    const future = sealRequest(stamped(now + 30_001), pk).envelope;
    assert.throws(() => h.open(future), isE2E('stale'));
    const nearFuture = sealRequest(stamped(now + 29_000), pk).envelope;
    h.open(nearFuture);
    const undated = sealRequest(httpRequest(), pk).envelope;
    assert.throws(() => h.open(undated), isE2E('stale'));
    const twice = Buffer.from(`GET / HTTP/1.1\r\nx-mesh-sent-at: ${now}\r\nX-Mesh-Sent-At: ${now}\r\n\r\n`);
    assert.throws(() => h.open(sealRequest(twice, pk).envelope), isE2E('stale'));
    const garbage = Buffer.from('GET / HTTP/1.1\r\nx-mesh-sent-at: soon\r\n\r\n');
    assert.throws(() => h.open(sealRequest(garbage, pk).envelope), isE2E('stale'));
    const noHeaders = Buffer.from(`x-mesh-sent-at: ${now}`);
    assert.throws(() => h.open(sealRequest(noHeaders, pk).envelope), isE2E('stale'));
  });

  it('does not remember envelopes that were rejected (no guard poisoning)', () => {
    const h = host();
    const pk = h.keyring.current().publicKey;
    const stale = sealRequest(stamped(h.clock.now() - 10 * 60_000), pk).envelope;
    assert.throws(() => h.open(stale), isE2E('stale'));
    assert.equal(h.guard.size, 0);
  });

  it('rejects truncated, non-JSON, wrong-version and bad-base64 envelopes', () => {
    const h = host();
    const { envelope } = sealRequest(stamped(h.clock.now()), h.keyring.current().publicKey);
    const json = envelopeJson(envelope);
    assert.throws(() => h.open(new Uint8Array(0)), isE2E('truncated'));
    assert.throws(() => h.open(Buffer.from('POST / HTTP/1.1\r\n\r\n')), isE2E('bad_magic'));
    assert.throws(() => h.open(envelope.subarray(0, 1)), isE2E('malformed_envelope'));
    assert.throws(() => h.open(envelope.subarray(0, envelope.byteLength - 1)), isE2E('malformed_envelope'));
    assert.throws(() => h.open(envelope.subarray(0, 40)), isE2E('malformed_envelope'));
    assert.throws(() => h.open(rawEnvelope('not json')), isE2E('malformed_envelope'));
    assert.throws(
      () => h.open(rawEnvelope(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))),
      isE2E('malformed_envelope'),
    );
    assert.throws(() => h.open(rawEnvelope('[1,2]')), isE2E('malformed_envelope'));
    assert.throws(() => h.open(rawEnvelope('null')), isE2E('malformed_envelope'));
    assert.throws(() => h.open(rawEnvelope(JSON.stringify({ ...json, v: 2 }))), isE2E('unsupported_version'));
    assert.throws(
      () => h.open(rawEnvelope(JSON.stringify({ ...json, v: '1' }))),
      isE2E('malformed_envelope'),
    );
    const { v: _v, ...noVersion } = json;
    assert.throws(() => h.open(rawEnvelope(JSON.stringify(noVersion))), isE2E('malformed_envelope'));
    const { ciphertext: _c, ...noCiphertext } = json;
    assert.throws(() => h.open(rawEnvelope(JSON.stringify(noCiphertext))), isE2E('malformed_envelope'));
    const bad = (patch: Record<string, unknown>) => rawEnvelope(JSON.stringify({ ...json, ...patch }));
    assert.throws(
      () => h.open(bad({ ciphertext: `${json.ciphertext.slice(0, -4)}!!!!` })),
      isE2E('malformed_envelope'),
    );
    assert.throws(() => h.open(bad({ ciphertext: `${json.ciphertext}A` })), isE2E('malformed_envelope'));
    assert.throws(
      () => h.open(bad({ ciphertext: json.ciphertext.slice(0, -1) })),
      isE2E('malformed_envelope'),
    );
    assert.throws(() => h.open(bad({ ciphertext: ` ${json.ciphertext}` })), isE2E('malformed_envelope'));
    const urlSafe = json.ephemeral_public_key.replaceAll('+', '-').replaceAll('/', '_');
    if (urlSafe !== json.ephemeral_public_key) {
      assert.throws(() => h.open(bad({ ephemeral_public_key: urlSafe })), isE2E('malformed_envelope'));
    }
    assert.throws(() => h.open(bad({ ephemeral_public_key: 'AAAA' })), isE2E('malformed_envelope'));
    assert.throws(() => h.open(bad({ ephemeral_public_key: 42 })), isE2E('malformed_envelope'));
    assert.throws(
      () => h.open(bad({ ciphertext: Buffer.alloc(39).toString('base64') })),
      isE2E('malformed_envelope'),
    );
    // Unknown extra fields are tolerated (forward compatibility) and the envelope still opens.
    h.open(bad({ note: 'future field' }));
  });

  it('opens the same request whatever JSON layout carries it (key order, whitespace, escapes)', () => {
    const layouts = (json: { v: number; ephemeral_public_key: string; ciphertext: string }) => [
      `{"ciphertext":"${json.ciphertext}","ephemeral_public_key":"${json.ephemeral_public_key}","v":1}`,
      JSON.stringify(json, null, 2),
      // The exact byte layout sealRequest writes, with one base64 character written as a JSON escape.
      `{"v":1,"ephemeral_public_key":"${json.ephemeral_public_key}","ciphertext":"\\u00${json.ciphertext
        .charCodeAt(0)
        .toString(16)}${json.ciphertext.slice(1)}"}`,
    ];
    const h = host();
    for (let i = 0; i < 3; i++) {
      const plaintext = stamped(h.clock.now());
      const { envelope } = sealRequest(plaintext, h.keyring.current().publicKey);
      const rewritten = rawEnvelope(layouts(envelopeJson(envelope))[i]!);
      assert.deepEqual(Buffer.from(h.open(rewritten).plaintext), Buffer.from(plaintext));
    }
  });

  it('enforces the plaintext cap before decrypting, and the envelope cap before parsing', () => {
    const h = host();
    const pk = h.keyring.current().publicKey;
    const body = 'x'.repeat(2000);
    const { envelope } = sealRequest(stamped(h.clock.now(), body), pk);
    assert.throws(() => h.open(envelope, 1000), isE2E('too_large'));
    const huge = Buffer.alloc(maxEnvelopeBytes(1000) + 1, 0x20);
    huge[0] = E2E_MAGIC;
    assert.throws(() => h.open(huge, 1000), isE2E('too_large'));
    // Exactly at the cap is fine.
    const exact = stamped(h.clock.now());
    const fits = sealRequest(exact, pk).envelope;
    h.open(fits, exact.byteLength);
  });

  it('collectEnvelope stops reading as soon as the cap is passed', async () => {
    const limit = maxEnvelopeBytes(100);
    let pulled = 0;
    async function* endless() {
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield new Uint8Array(64);
      }
    }
    await assert.rejects(collectEnvelope(endless(), 100), isE2E('too_large'));
    assert.ok(pulled <= Math.ceil(limit / 64) + 1);
    const whole = await collectEnvelope(chunksOf(Buffer.from([0xe1, 1]), Buffer.from([2, 3])), 100);
    assert.deepEqual([...whole], [0xe1, 1, 2, 3]);
  });

  it('uses any key of a keyring-like source and refuses an empty one', () => {
    const keyring = new InferenceKeyring();
    try {
      const guard = new ReplayGuard();
      const { envelope } = sealRequest(stamped(Date.now()), keyring.current().publicKey);
      // A minimal source with only current() + secretFor() works too.
      const minimal = {
        current: () => keyring.current(),
        secretFor: (pk: Uint8Array) => keyring.secretFor(pk),
      };
      assert.ok(openRequest(envelope, { keyring: minimal, replayGuard: guard }).plaintext.byteLength > 0);
      const empty = { ...minimal, activePublicKeys: () => [] };
      const second = sealRequest(stamped(Date.now()), keyring.current().publicKey).envelope;
      assert.throws(() => openRequest(second, { keyring: empty, replayGuard: guard }), isE2E('unknown_key'));
    } finally {
      keyring.destroy();
    }
  });
});

describe('x-mesh-sent-at helpers', () => {
  it('stampSentAt inserts exactly one header and keeps the body byte-exact', () => {
    const request = httpRequest('{"a":"\u00e9\r\n\r\n"}');
    const once = stampSentAt(request, 123);
    const twice = stampSentAt(once, 456);
    assert.equal(readSentAt(once), 123);
    assert.equal(readSentAt(twice), 456);
    const text = Buffer.from(twice).toString('latin1');
    assert.equal(text.match(/x-mesh-sent-at/g)?.length, 1);
    assert.ok(text.startsWith('POST /v1/chat/completions HTTP/1.1\r\nx-mesh-sent-at: 456\r\n'));
    const bodyStart = request.indexOf('\r\n\r\n') + 4;
    assert.deepEqual(
      Buffer.from(twice).subarray(-request.byteLength + bodyStart),
      request.subarray(bodyStart),
    );
    assert.throws(() => stampSentAt(Buffer.from('no header block'), 1), isE2E('malformed_envelope'));
  });

  it('readSentAt ignores the header when it only appears in the body', () => {
    const request = Buffer.from('POST / HTTP/1.1\r\nhost: a\r\n\r\nx-mesh-sent-at: 5\r\n');
    assert.equal(readSentAt(request), undefined);
  });
});
