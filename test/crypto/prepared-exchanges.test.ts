import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { sealRequest } from '../../src/crypto/envelope.ts';
import { PreparedExchanges } from '../../src/crypto/prepared-exchanges.ts';
import { ResponseOpener, ResponseSealer } from '../../src/crypto/response-frames.ts';
import { wipe } from '../../src/crypto/sodium.ts';
import { fakeClock, type Host, isE2E, makeHost, stamped } from './fixtures.ts';

const hosts: Host[] = [];
const caches: PreparedExchanges[] = [];
function host(): Host {
  const h = makeHost();
  hosts.push(h);
  return h;
}
function cache(options: ConstructorParameters<typeof PreparedExchanges>[0] = {}): PreparedExchanges {
  const c = new PreparedExchanges(options);
  caches.push(c);
  return c;
}
afterEach(() => {
  for (const c of caches.splice(0)) c.clear();
  for (const h of hosts.splice(0)) h.destroy();
});

const isZero = (bytes: Uint8Array) => bytes.every((byte) => byte === 0);

describe('prepared key exchanges', () => {
  it('a prepared exchange seals a request the host opens and answers', () => {
    const h = host();
    const hostKey = h.keyring.current().publicKey;
    const exchanges = cache();
    assert.equal(exchanges.take(hostKey), undefined, 'nothing before prepare');
    exchanges.prepare(hostKey);
    assert.equal(exchanges.size(hostKey), 2);
    const prepared = exchanges.take(hostKey);
    assert.ok(prepared);
    const plaintext = stamped(h.clock.now());
    const { envelope, session } = sealRequest(plaintext, hostKey, prepared);
    assert.deepEqual(session.ephemeralPublicKey, Uint8Array.from(prepared.ephemeralPublicKey));
    const opened = h.open(envelope);
    assert.deepEqual(Buffer.from(opened.plaintext), Buffer.from(plaintext));
    const sealer = new ResponseSealer(opened.session);
    const opener = new ResponseOpener(session);
    const frames = Buffer.concat([sealer.data(Buffer.from('HTTP/1.1 200 OK\r\n\r\nhi')), sealer.end()]);
    assert.equal(Buffer.concat(opener.push(frames)).toString(), 'HTTP/1.1 200 OK\r\n\r\nhi');
    session.dispose();
    assert.ok(isZero(prepared.sharedKey), 'the session wiped the prepared key after use');
  });

  it('hands each exchange out once, each with its own ephemeral key', () => {
    const hostKey = host().keyring.current().publicKey;
    const exchanges = cache({ perHost: 3 });
    exchanges.prepare(hostKey);
    const taken = [exchanges.take(hostKey), exchanges.take(hostKey), exchanges.take(hostKey)];
    assert.equal(exchanges.take(hostKey), undefined);
    const publicKeys = new Set(taken.map((e) => Buffer.from(e!.ephemeralPublicKey).toString('hex')));
    assert.equal(publicKeys.size, 3);
    exchanges.prepare(hostKey);
    assert.equal(exchanges.size(hostKey), 3, 'topped up again');
  });

  it('keeps exchanges per host key: one host never gets another host’s', () => {
    const a = host().keyring.current().publicKey;
    const b = host().keyring.current().publicKey;
    const exchanges = cache();
    exchanges.prepare(a);
    assert.equal(exchanges.take(b), undefined);
    assert.equal(exchanges.size(a), 2);
  });

  it('never hands out an exchange older than ttlMs; a sweep drops expired ones', () => {
    const clock = fakeClock();
    const hostKey = host().keyring.current().publicKey;
    const exchanges = cache({ ttlMs: 1_000, clock: clock.now });
    exchanges.prepare(hostKey);
    clock.advance(1_001);
    assert.equal(exchanges.take(hostKey), undefined, 'expired: wiped, not used');
    assert.equal(exchanges.size(hostKey), 0);
    exchanges.prepare(hostKey);
    clock.advance(999);
    const fresh = exchanges.take(hostKey);
    assert.ok(fresh && !isZero(fresh.sharedKey));
    wipe(fresh.sharedKey);
    clock.advance(2);
    exchanges.sweep();
    assert.equal(exchanges.size(hostKey), 0, 'the sweep dropped the expired one');
  });

  it('drops the least recently used host beyond maxHosts, and clear() wipes everything', () => {
    const keys = [host(), host(), host()].map((h) => h.keyring.current().publicKey);
    const exchanges = cache({ maxHosts: 2, perHost: 1 });
    exchanges.prepare(keys[0]!);
    exchanges.prepare(keys[1]!);
    exchanges.prepare(keys[0]!); // keys[0] is now the most recently used
    exchanges.prepare(keys[2]!);
    assert.deepEqual(
      keys.map((k) => exchanges.size(k)),
      [1, 0, 1],
    );
    exchanges.clear();
    assert.deepEqual(
      keys.map((k) => exchanges.size(k)),
      [0, 0, 0],
    );
  });

  it('prepares nothing for an unusable key; sealing still refuses it with a typed error', () => {
    const exchanges = cache();
    const lowOrder = new Uint8Array(32); // the all-zero point
    exchanges.prepare(lowOrder);
    exchanges.prepare(new Uint8Array(7));
    assert.equal(exchanges.size(lowOrder), 0);
    assert.throws(
      () => sealRequest(stamped(Date.now()), lowOrder, exchanges.take(lowOrder)),
      isE2E('invalid_key'),
    );
  });
});
