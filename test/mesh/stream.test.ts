import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { PROTOCOL_HTTP } from '../../src/mesh/types.ts';
import { clusterPerTest, readAll, waitFor } from './helpers.ts';

const cluster = clusterPerTest();

test('a slow reader pauses the writer instead of overflowing buffers (12 MiB)', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  const total = 12 * 1024 * 1024;
  const data = randomBytes(total);
  let received: Promise<string> | undefined;
  b.handle(PROTOCOL_HTTP, async (stream) => {
    received = (async () => {
      const hash = createHash('sha256');
      let n = 0;
      for await (const chunk of stream.source) {
        hash.update(chunk);
        n += chunk.byteLength;
        // Consume slowly at first so backpressure must engage.
        if (n < 6 * 1024 * 1024) await new Promise((r) => setTimeout(r, 2));
      }
      await stream.write(Buffer.from('done'));
      await stream.closeWrite();
      return hash.digest('hex');
    })();
    await received;
  });
  await b.join(a.inviteToken());
  await waitFor(() => b.peer(a.endpointId) !== undefined && a.peer(b.endpointId) !== undefined, 'peers');
  const stream = await a.openStream(b.endpointId, PROTOCOL_HTTP);
  for (let i = 0; i < total; i += 256 * 1024) await stream.write(data.subarray(i, i + 256 * 1024));
  await stream.closeWrite();
  const reply = await readAll(stream.source);
  assert.equal(reply.toString(), 'done');
  assert.equal(await received, createHash('sha256').update(data).digest('hex'));
});

test('abort on one side surfaces as an error on the other; handler errors do not crash the node', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  b.handle(PROTOCOL_HTTP, async () => {
    throw new Error('handler exploded');
  });
  await b.join(a.inviteToken());
  await waitFor(() => b.peer(a.endpointId) !== undefined && a.peer(b.endpointId) !== undefined, 'peers');
  const s1 = await a.openStream(b.endpointId, PROTOCOL_HTTP);
  // The handler may reset before or after this write lands; either way the read fails.
  await s1.write(Buffer.from('x')).catch(() => undefined);
  await assert.rejects(readAll(s1.source));
  // Still serving afterwards.
  b.handle(PROTOCOL_HTTP, async (stream) => {
    await readAll(stream.source);
    await stream.write(Buffer.from('ok'));
    await stream.closeWrite();
  });
  const s2 = await a.openStream(b.endpointId, PROTOCOL_HTTP);
  await s2.closeWrite();
  assert.equal((await readAll(s2.source)).toString(), 'ok');
  // Local abort: the remote handler sees its read fail.
  let remoteError: unknown;
  b.handle(PROTOCOL_HTTP, async (stream) => {
    try {
      await readAll(stream.source);
    } catch (err) {
      remoteError = err;
    }
  });
  const s3 = await a.openStream(b.endpointId, PROTOCOL_HTTP);
  await s3.write(Buffer.from('partial'));
  s3.abort(new Error('client gave up'));
  await waitFor(() => remoteError !== undefined, 'remote sees the reset');
  await assert.rejects(a.openStream(a.endpointId, PROTOCOL_HTTP));
  await assert.rejects(a.openStream('00'.repeat(32), PROTOCOL_HTTP));
});

test('writes in one event-loop turn travel as one chunk; a later write is not held back', async () => {
  const a = await cluster().node();
  const b = await cluster().node();
  const chunks: string[] = [];
  let gotFirst: () => void = () => undefined;
  const first = new Promise<void>((r) => {
    gotFirst = r;
  });
  b.handle(PROTOCOL_HTTP, async (stream) => {
    for await (const chunk of stream.source) {
      chunks.push(Buffer.from(chunk).toString());
      gotFirst();
    }
    await stream.closeWrite();
  });
  await b.join(a.inviteToken());
  await waitFor(() => b.peer(a.endpointId) !== undefined && a.peer(b.endpointId) !== undefined, 'peers');
  const stream = await a.openStream(b.endpointId, PROTOCOL_HTTP);
  await Promise.all([stream.write(Buffer.from('one,')), stream.write(Buffer.from('two,'))]);
  await stream.write(Buffer.from('three'));
  await first; // arrives without a closeWrite or more writes to push it out
  assert.deepEqual(chunks, ['one,two,three']);
  await stream.write(Buffer.from('four'));
  await stream.closeWrite();
  await readAll(stream.source);
  assert.deepEqual(chunks, ['one,two,three', 'four']);
});
