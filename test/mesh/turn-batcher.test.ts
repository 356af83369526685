import assert from 'node:assert/strict';
import { test } from 'node:test';
import { joinBatch, TurnBatcher } from '../../src/mesh/turn-batcher.ts';

const turn = () => new Promise((r) => setImmediate(r));

test('chunks written in one turn are sent as one, in order; later ones in their own turn', async () => {
  const sent: string[] = [];
  const batcher = new TurnBatcher((chunks, byteLength) => {
    sent.push(Buffer.from(joinBatch(chunks, byteLength)).toString());
  });
  await batcher.write(Buffer.from('a'));
  await batcher.write(Buffer.from('b'));
  await batcher.write(new Uint8Array(0));
  assert.deepEqual(sent, [], 'held until the end of the turn');
  await turn();
  assert.deepEqual(sent, ['ab']);
  await batcher.write(Buffer.from('c'));
  await batcher.flush();
  assert.deepEqual(sent, ['ab', 'c']);
});

test('a full batch is sent at once and the writer waits for it', async () => {
  const sizes: number[] = [];
  const batcher = new TurnBatcher(async (chunks, byteLength) => {
    await turn();
    assert.equal(
      chunks.reduce((n, c) => n + c.byteLength, 0),
      byteLength,
    );
    sizes.push(byteLength);
  });
  await batcher.write(new Uint8Array(40 * 1024));
  await batcher.write(new Uint8Array(40 * 1024));
  assert.deepEqual(sizes, [80 * 1024]);
});

test('a failed send fails later writes and flushes; discard drops what is queued', async () => {
  let calls = 0;
  const batcher = new TurnBatcher(() => {
    calls++;
    throw new Error('stream closed');
  });
  await batcher.write(Buffer.from('x'));
  await assert.rejects(batcher.flush(), /stream closed/);
  await assert.rejects(batcher.write(Buffer.from('y')), /stream closed/);
  const quiet = new TurnBatcher(() => {
    calls++;
  });
  await quiet.write(Buffer.from('z'));
  quiet.discard();
  await quiet.flush();
  assert.equal(calls, 1);
});
