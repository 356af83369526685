import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PINS_FILE, PinStore } from '../../src/attestation/pins.ts';
import { ConfigError } from '../../src/errors.ts';
import { tempDir } from './helpers.ts';

const key = (fill: number) => Buffer.concat([Buffer.of(4), Buffer.alloc(64, fill)]).toString('base64');

describe('PinStore', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir();
  });
  after(() => dir.cleanup());

  it('pins, persists atomically with mode 0600, looks up and resets', async () => {
    const dataDir = join(dir.path, 'a');
    const store = await PinStore.open({ dataDir });
    const endpoint = 'ab'.repeat(32);
    assert.equal(store.lookup(endpoint), undefined);
    const changes: string[] = [];
    const off = store.onChange((id) => changes.push(id));
    await store.pin(endpoint, key(1), 1234);
    assert.deepEqual(store.lookup(endpoint), { key: key(1), pinnedAtMs: 1234 });
    assert.equal((await stat(join(dataDir, PINS_FILE))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dataDir), [PINS_FILE], 'no temp files left behind');
    const reopened = await PinStore.open({ dataDir });
    assert.deepEqual(reopened.lookup(endpoint), { key: key(1), pinnedAtMs: 1234 });
    assert.equal(await store.reset(endpoint), true);
    assert.equal(await store.reset(endpoint), false);
    assert.equal((await PinStore.open({ dataDir })).lookup(endpoint), undefined);
    assert.deepEqual(changes, [endpoint, endpoint]);
    off();
  });

  it('serializes concurrent writes so the file holds the final state', async () => {
    const dataDir = join(dir.path, 'b');
    const store = await PinStore.open({ dataDir });
    const ids = Array.from({ length: 20 }, (_, i) => i.toString(16).padStart(2, '0').repeat(32));
    await Promise.all(ids.map((id, i) => store.pin(id, key(i), i)));
    const onDisk = JSON.parse(await readFile(join(dataDir, PINS_FILE), 'utf8'));
    assert.equal(Object.keys(onDisk.pins).length, 20);
  });

  it('rejects invalid pins and corrupt files with ConfigError', async () => {
    const dataDir = join(dir.path, 'c');
    const store = await PinStore.open({ dataDir });
    await assert.rejects(store.pin('xyz', key(1), 0), ConfigError);
    await assert.rejects(store.pin('ab'.repeat(32), 'AAAA', 0), ConfigError);
    await mkdir(dataDir, { recursive: true });
    for (const body of [
      '{',
      '[]',
      '{"version":2,"pins":{}}',
      '{"version":1,"pins":{"zz":{}}}',
      `{"version":1,"pins":{"${'ab'.repeat(32)}":{"key":"x","pinnedAtMs":1}}}`,
    ]) {
      await writeFile(join(dataDir, PINS_FILE), body);
      await assert.rejects(PinStore.open({ dataDir }), ConfigError, body);
    }
  });
});

describe('PinStore bounds (issue #15)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir();
  });
  after(() => dir.cleanup());
  const id = (i: number) => i.toString(16).padStart(64, '0');

  it('300 pins made at once share a write or two, not an fsync each', async () => {
    const store = await PinStore.open({ dataDir: join(dir.path, 'batch') });
    await Promise.all(Array.from({ length: 300 }, (_, i) => store.pin(id(i), key(i % 250), i)));
    assert.ok(store.writes <= 2, `${store.writes} writes`);
    const onDisk = JSON.parse(await readFile(store.path, 'utf8'));
    assert.equal(Object.keys(onDisk.pins).length, 300);
  });

  it('keeps at most maxPins, evicting the least recently seen', async () => {
    let now = 1_000;
    const store = await PinStore.open({
      dataDir: join(dir.path, 'cap'),
      maxPins: 10,
      clock: () => now,
      batchMs: 1,
    });
    for (let i = 0; i < 10; i++) {
      now += 1;
      await store.pin(id(i), key(i), now);
    }
    now += 1;
    store.seen(id(0));
    await store.pin(id(100), key(100), now);
    assert.equal(store.list().length, 10);
    assert.ok(store.lookup(id(0)), 'recently seen survives');
    assert.equal(store.lookup(id(1)), undefined, 'least recently seen evicted');
  });

  it('forgets a pin whose peer has been unseen past expiry, across restarts', async () => {
    let now = Date.now();
    const dataDir = join(dir.path, 'expire');
    const options = { dataDir, expireAfterMs: 60_000, clock: () => now, batchMs: 1 };
    const store = await PinStore.open(options);
    await store.pin(id(1), key(1), now);
    await store.pin(id(2), key(2), now);
    now += 50_000;
    store.seen(id(2));
    await store.pin(id(3), key(3), now); // a write, carrying id(2)'s new seen time
    now += 20_000;
    const reopened = await PinStore.open(options);
    assert.equal(reopened.lookup(id(1)), undefined, 'unseen for 70 s > 60 s: expired');
    assert.ok(reopened.lookup(id(2)));
    assert.ok(reopened.lookup(id(3)));
  });
});
