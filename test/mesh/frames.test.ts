import assert from 'node:assert/strict';
import { test } from 'node:test';
import { streamPair } from '@libp2p/utils';
import {
  decodeFrames,
  encodeFrame,
  frameStream,
  isMalformedFrame,
  MAX_FRAME_BYTES,
} from '../../src/mesh/frames.ts';
import { lengthPrefix } from './helpers.ts';

async function collect(chunks: Uint8Array[], maxBytes?: number): Promise<number[]> {
  const lengths: number[] = [];
  for await (const frame of decodeFrames(
    (async function* () {
      yield* chunks;
    })(),
    maxBytes,
  )) {
    lengths.push(frame.byteLength);
  }
  return lengths;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  assert.fail('expected a rejection');
}

test('the wire format: an unsigned varint length prefix, then the payload (SPEC §4)', () => {
  assert.deepEqual([...encodeFrame(Uint8Array.of(7, 8, 9))], [3, 7, 8, 9]);
  assert.deepEqual([...lengthPrefix(300)], [0xac, 0x02]);
  assert.deepEqual([...lengthPrefix(MAX_FRAME_BYTES)], [0x80, 0x80, 0x80, 0x04]);
  assert.throws(() => encodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1)), { name: 'InvalidDataLengthError' });
});

test('ByteStream frames: split anywhere, empty ones included, they come out whole and in order', async () => {
  const wire = Buffer.concat([
    encodeFrame(new Uint8Array(0)),
    encodeFrame(new Uint8Array(300)),
    lengthPrefix(0),
  ]);
  const byteByByte = [...wire].map((b) => Uint8Array.of(b));
  assert.deepEqual(await collect(byteByByte), [0, 300, 0]);
  assert.deepEqual(await collect([wire]), [0, 300, 0]);
});

test('ByteStream frames: one over the cap, an overlong prefix or a cut-short one is refused', async () => {
  // Only the prefix is sent: the refusal comes before any of the frame is buffered.
  const oversize = await rejection(collect([lengthPrefix(1025)], 1024));
  assert.equal(oversize.name, 'InvalidDataLengthError');
  assert.ok(isMalformedFrame(oversize));
  const beyondDefault = await rejection(collect([lengthPrefix(MAX_FRAME_BYTES + 1)]));
  assert.equal(beyondDefault.name, 'InvalidDataLengthError');
  assert.deepEqual(await collect([lengthPrefix(1024), new Uint8Array(1024)], 1024), [1024]);

  const overlong = await rejection(collect([new Uint8Array(12).fill(0xff)]));
  assert.ok(isMalformedFrame(overlong), overlong.name);

  const truncated = await rejection(collect([lengthPrefix(100), new Uint8Array(99)]));
  assert.equal(truncated.name, 'UnexpectedEOFError');
  assert.ok(!isMalformedFrame(truncated), 'a cut-short stream is a lost connection as often as a lie');
  assert.equal((await rejection(collect([Uint8Array.of(0x80)]))).name, 'UnexpectedEOFError');
});

test('libp2p stream frames: a frame up to 8 MiB arrives whole, past lpStream’s 4 MiB buffer', async () => {
  const [a, b] = await streamPair();
  const sent = new Uint8Array(6 * 1024 * 1024).fill(7);
  const writing = frameStream(a)
    .write(sent)
    .then(() => a.close());
  const got = await frameStream(b).read({ signal: AbortSignal.timeout(10_000) });
  await writing;
  assert.equal(got.byteLength, sent.byteLength);
  assert.ok(got.subarray().every((x) => x === 7));
});

test('libp2p stream frames: oversize and cut-short frames are refused, a silent peer meets the deadline', async () => {
  {
    const [a, b] = await streamPair();
    a.send(lengthPrefix(1025));
    const error = await rejection(frameStream(b, 1024).read({ signal: AbortSignal.timeout(10_000) }));
    assert.equal(error.name, 'InvalidDataLengthError');
    assert.ok(isMalformedFrame(error));
  }
  {
    const [a, b] = await streamPair();
    a.send(Buffer.concat([lengthPrefix(100), new Uint8Array(99)]));
    await a.close();
    const error = await rejection(frameStream(b).read({ signal: AbortSignal.timeout(10_000) }));
    assert.equal(error.name, 'UnexpectedEOFError');
  }
  {
    const [, b] = await streamPair();
    const started = Date.now();
    const error = await rejection(frameStream(b).read({ signal: AbortSignal.timeout(100) }));
    assert.ok(Date.now() - started < 5_000, error.name);
  }
});
