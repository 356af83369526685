import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { sealRequest } from '../../src/crypto/envelope.ts';
import { E2ERemoteError } from '../../src/crypto/errors.ts';
import { InferenceKeyring } from '../../src/crypto/inference-keys.ts';
import {
  MAX_FRAME_LENGTH,
  MIN_FRAME_LENGTH,
  openResponse,
  RESPONSE_HEADER_BYTES,
  ResponseOpener,
  ResponseSealer,
} from '../../src/crypto/response-frames.ts';
import type { SenderSession } from '../../src/crypto/sessions.ts';
import { chunksOf, collect, exchange, type Host, isE2E, makeHost, prng } from './fixtures.ts';

const hosts: Host[] = [];
afterEach(() => {
  for (const h of hosts.splice(0)) h.destroy();
});

/** A request exchange plus a sealer answering it. */
function pair(options?: { maxFrameDataBytes?: number }) {
  const h = makeHost();
  hosts.push(h);
  const { sender, hostSession } = exchange(h);
  const sealer = new ResponseSealer(hostSession, options);
  return { h, sender, hostSession, sealer };
}

/** Header + one frame per chunk + end, as separate buffers so tests can rearrange them. */
function frames(
  sealer: ResponseSealer,
  ...chunks: string[]
): { header: Uint8Array; data: Uint8Array[]; end: Uint8Array } {
  const header = sealer.header();
  const data = chunks.map((c) => sealer.data(Buffer.from(c)));
  return { header, data, end: sealer.end() };
}

function open(sender: SenderSession, ...parts: Uint8Array[]): Promise<Buffer> {
  return collect(openResponse(chunksOf(...parts), sender));
}

describe('response frames', () => {
  it('round-trips single-chunk, multi-chunk and empty answers', async () => {
    {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      assert.equal(f.header.byteLength, RESPONSE_HEADER_BYTES);
      assert.equal(
        (await open(sender, f.header, ...f.data, f.end)).toString(),
        'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok',
      );
      assert.ok(sender.disposed, 'openResponse frees the sender secret when done');
    }
    {
      const { sender, sealer } = pair();
      const parts = ['HTTP/1.1 200 OK\r\n\r\n', 'data: {"a":1}\n\n', 'data: {"b":2}\n\n', 'data: [DONE]\n\n'];
      const f = frames(sealer, ...parts);
      const yielded: string[] = [];
      for await (const chunk of openResponse(chunksOf(f.header, ...f.data, f.end), sender)) {
        yielded.push(Buffer.from(chunk).toString());
      }
      assert.deepEqual(yielded, parts);
    }
    {
      const { sender, sealer, hostSession } = pair();
      const header = sealer.header();
      assert.equal(sealer.data(new Uint8Array(0)).byteLength, 0, 'empty chunk → no frame');
      const end = sealer.end();
      assert.ok(hostSession.disposed, 'end() frees the host session secret');
      assert.equal((await open(sender, header, end)).byteLength, 0);
    }
  });

  it('prepends the header automatically if header() was not called', async () => {
    const { sender, sealer } = pair();
    const first = sealer.data(Buffer.from('abc'));
    assert.equal(sealer.header().byteLength, 0);
    assert.equal((await open(sender, first, sealer.end())).toString(), 'abc');
  });

  it('accepts a zero-length data frame and any chunking of the byte stream', async () => {
    const { sender, sealer } = pair();
    const bytes = Buffer.concat([
      sealer.header(),
      sealer.data(Buffer.from('hello ')),
      sealer.data(Buffer.from('world')),
      sealer.end(),
    ]);
    const opener = new ResponseOpener(sender);
    const out: Uint8Array[] = [];
    for (const byte of bytes) out.push(...opener.push(Uint8Array.of(byte)));
    opener.finish();
    assert.ok(opener.ended);
    assert.equal(Buffer.concat(out).toString(), 'hello world');
  });

  it('splits large chunks into bounded frames and reassembles them', async () => {
    const { sender, sealer } = pair({ maxFrameDataBytes: 1000 });
    const body = prng(7).bytes(4500);
    const sealed = sealer.data(body);
    assert.equal(sealed.byteLength, RESPONSE_HEADER_BYTES + 5 * (4 + MIN_FRAME_LENGTH) + 4500);
    const opener = new ResponseOpener(sender);
    const chunks = opener.push(sealed);
    assert.equal(chunks.length, 5);
    assert.deepEqual(Buffer.concat(chunks), body);
    assert.equal(opener.push(sealer.end()).length, 0);
    opener.finish();

    it('seals a batch of chunks as the bytes they join to, across frame and chunk boundaries', () => {
      const { sender, sealer } = pair({ maxFrameDataBytes: 1000 });
      const body = prng(8).bytes(4500);
      const batch = [body.subarray(0, 1), body.subarray(1, 1001), new Uint8Array(0), body.subarray(1001)];
      const sealed = sealer.data(batch);
      assert.equal(sealed.byteLength, RESPONSE_HEADER_BYTES + 5 * (4 + MIN_FRAME_LENGTH) + 4500);
      const opener = new ResponseOpener(sender);
      const chunks = opener.push(sealed);
      assert.deepEqual(
        chunks.map((c) => c.byteLength),
        [1000, 1000, 1000, 1000, 500],
      );
      assert.deepEqual(Buffer.concat(chunks), body);
      assert.equal(sealer.data([]).byteLength, 0, 'an empty batch → no frame');
      opener.push(sealer.end());
      opener.finish();
    });
  });

  it('yields each frame before the source ends (no buffering)', async () => {
    const { sender, sealer } = pair();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const header = sealer.header();
    const first = sealer.data(Buffer.from('first'));
    async function* source() {
      yield header;
      yield first;
      await gate;
      yield sealer.end();
    }
    const iterator = openResponse(source(), sender);
    const step = await iterator.next();
    assert.equal(Buffer.from(step.value as Uint8Array).toString(), 'first');
    release();
    assert.deepEqual(await iterator.next(), { done: true, value: undefined });
  });

  it('aborts on a header key different from the key the request was sealed to, yielding nothing', async () => {
    const { sender, sealer } = pair();
    const f = frames(sealer, 'secret answer');
    const other = new InferenceKeyring();
    try {
      const forged = Buffer.from(f.header);
      forged.set(other.current().publicKey, 1);
      const seen: Uint8Array[] = [];
      await assert.rejects(async () => {
        for await (const chunk of openResponse(chunksOf(forged, ...f.data, f.end), sender)) seen.push(chunk);
      }, isE2E('key_mismatch'));
      assert.equal(seen.length, 0);
    } finally {
      other.destroy();
    }
    const { sender: s2, sealer: k2 } = pair();
    const bad = Buffer.from(k2.header());
    bad[0] = 0x00;
    await assert.rejects(open(s2, bad, k2.end()), isE2E('bad_magic'));
  });

  it('a response sealed by another host for the same sender does not open', async () => {
    const a = pair();
    const b = pair();
    const header = Buffer.concat([Uint8Array.of(0xe1), a.sender.hostPublicKey]);
    await assert.rejects(
      open(a.sender, header, b.sealer.data(Buffer.from('x')).subarray(RESPONSE_HEADER_BYTES)),
      isE2E('decrypt_failed'),
    );
  });

  it('detects a tampered byte in a frame', async () => {
    for (const index of [0, 4, 27, 28, 43, 44, 60]) {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'tamper-evident payload of some length');
      const frame = Buffer.from(f.data[0]!);
      frame[index]! ^= 0x04;
      // Flipping the length prefix shifts framing: a short, long or undecryptable frame results.
      await assert.rejects(open(sender, f.header, frame, f.end), (error: unknown) => {
        const codes =
          index < 4 ? ['decrypt_failed', 'bad_frame', 'truncated', 'frame_too_large'] : ['decrypt_failed'];
        assert.ok(codes.includes((error as { code?: string }).code ?? ''), String(error));
        return true;
      });
    }
  });

  it('detects reordered, dropped and duplicated frames', async () => {
    {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'a', 'b', 'c');
      await assert.rejects(
        open(sender, f.header, f.data[1]!, f.data[0]!, f.data[2]!, f.end),
        isE2E('out_of_order'),
      );
    }
    {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'a', 'b', 'c');
      await assert.rejects(open(sender, f.header, f.data[0]!, f.data[2]!, f.end), isE2E('out_of_order'));
    }
    {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'a', 'b');
      await assert.rejects(
        open(sender, f.header, f.data[0]!, f.data[0]!, f.data[1]!, f.end),
        isE2E('out_of_order'),
      );
    }
    {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'a', 'b');
      await assert.rejects(
        open(sender, f.header, f.data[0]!, f.data[1]!, f.end, f.end),
        isE2E('data_after_end'),
      );
    }
  });

  it('detects a missing end frame, truncation and data after the end', async () => {
    {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'a', 'b');
      await assert.rejects(open(sender, f.header, ...f.data), isE2E('missing_end'));
      assert.ok(sender.disposed, 'failed streams free the secret too');
    }
    {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'a');
      await assert.rejects(open(sender, f.header, f.data[0]!, f.end.subarray(0, 10)), isE2E('truncated'));
    }
    {
      const { sender, sealer } = pair();
      await assert.rejects(open(sender, sealer.header().subarray(0, 20)), isE2E('truncated'));
    }
    {
      const { sender } = pair();
      await assert.rejects(open(sender), isE2E('truncated'));
    }
    {
      const { sender, sealer } = pair();
      const f = frames(sealer, 'a');
      await assert.rejects(
        open(sender, f.header, f.data[0]!, f.end, Uint8Array.of(0)),
        isE2E('data_after_end'),
      );
    }
  });

  it('rejects oversized and too-short frame lengths before reading them', async () => {
    const { sender, sealer } = pair();
    const header = sealer.header();
    const huge = Buffer.alloc(4);
    huge.writeUInt32LE(MAX_FRAME_LENGTH + 1);
    await assert.rejects(open(sender, header, huge), isE2E('frame_too_large'));
    const { sender: s2, sealer: k2 } = pair();
    const short = Buffer.alloc(4 + MIN_FRAME_LENGTH - 1);
    short.writeUInt32LE(MIN_FRAME_LENGTH - 1);
    await assert.rejects(open(s2, k2.header(), short), isE2E('bad_frame'));
    const { sender: s3, sealer: k3 } = pair();
    await assert.rejects(open(s3, k3.header(), Buffer.alloc(4)), isE2E('bad_frame'));
  });

  it('surfaces an error frame as E2ERemoteError with the host message, sanitised', async () => {
    const { sender, sealer } = pair();
    const header = sealer.header();
    const data = sealer.data(Buffer.from('partial'));
    const error = sealer.error('backend\u0000 failed\r\ninjected: 1');
    assert.throws(() => sealer.end(), isE2E('closed'));
    await assert.rejects(open(sender, header, data, error), (e: unknown) => {
      assert.ok(e instanceof E2ERemoteError);
      assert.equal(e.code, 'remote_error');
      assert.equal(e.remoteMessage, 'backend failed injected: 1');
      return true;
    });
  });

  it('keeps the first failure sticky and refuses use after finishing', () => {
    const { sender, sealer } = pair();
    const opener = new ResponseOpener(sender);
    const bad = Buffer.from(sealer.header());
    bad[5]! ^= 1;
    assert.throws(() => opener.push(bad), isE2E('key_mismatch'));
    assert.throws(() => opener.push(sealer.end()), isE2E('key_mismatch'));
    assert.throws(() => opener.finish(), isE2E('key_mismatch'));
    assert.throws(() => sealer.data(Buffer.from('x')), isE2E('closed'));
    assert.throws(() => sealer.header(), isE2E('closed'));
    sender.dispose();
    assert.throws(() => new ResponseOpener(sender), isE2E('closed'));
  });

  it('frames are bound to the sender ephemeral key: another request cannot read them', async () => {
    const h = makeHost();
    hosts.push(h);
    const one = exchange(h);
    const two = exchange(h);
    const sealer = new ResponseSealer(one.hostSession);
    const bytes = [sealer.header(), sealer.data(Buffer.from('for one only')), sealer.end()];
    await assert.rejects(open(two.sender, ...bytes), isE2E('decrypt_failed'));
    assert.equal((await open(one.sender, ...bytes)).toString(), 'for one only');
  });

  it('the host session outlives key expiry (it holds its own copy)', async () => {
    const h = makeHost({ graceMs: 1000 });
    hosts.push(h);
    const { sender, hostSession } = exchange(h);
    h.keyring.rotate();
    h.clock.advance(2000);
    assert.equal(h.keyring.secretFor(hostSession.hostPublicKey), undefined);
    const sealer = new ResponseSealer(hostSession);
    assert.equal(
      (await open(sender, sealer.header(), sealer.data(Buffer.from('late')), sealer.end())).toString(),
      'late',
    );
  });

  it('a request envelope cannot be replayed as a response frame', async () => {
    const h = makeHost();
    hosts.push(h);
    const { envelope, session } = sealRequest(
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      h.keyring.current().publicKey,
    );
    const json = JSON.parse(Buffer.from(envelope.subarray(1)).toString());
    const ct = Buffer.from(json.ciphertext, 'base64');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(ct.byteLength);
    const header = Buffer.concat([Uint8Array.of(0xe1), session.hostPublicKey]);
    // Same shared key, but the payload's type byte is 'G' (0x47): not a frame type.
    await assert.rejects(open(session, header, len, ct), isE2E('bad_frame'));
  });
});
