import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { Stream } from '@libp2p/interface';
import { streamPair } from '@libp2p/utils';
import { ConfigError } from '../../src/errors.ts';
import { Admission } from '../../src/mesh/admission.ts';
import { encodeFrame, frameStream, MAX_FRAME_BYTES } from '../../src/mesh/frames.ts';
import type { MeshMembership } from '../../src/mesh/membership.ts';
import { AdmitRequestSchema, AdmitResponseSchema, OwnerSignedSchema } from '../../src/proto/gen/mesh_pb.js';
import { lengthPrefix } from './helpers.ts';

const JOINER = 'a'.repeat(64);
const invite = create(OwnerSignedSchema, { body: new Uint8Array(40), signature: new Uint8Array(64) });

/** An owner node that refuses every invite (enough to see the request reach it and come back). */
function owner(): { admission: Admission; seen: number[] } {
  const seen: number[] = [];
  const membership = {
    isOwner: true,
    admit: (request: { invite?: { body: Uint8Array } }) => {
      seen.push(request.invite?.body.byteLength ?? -1);
      return create(AdmitResponseSchema, { error: 'invite expired' });
    },
  } as unknown as MeshMembership;
  const admission = new Admission({
    membership,
    self: 'b'.repeat(64),
    clock: Date.now,
    isMember: () => false,
    ownerNode: () => undefined,
    openStream: () => Promise.reject(new Error('not used')),
  });
  return { admission, seen };
}

function joiner(): Admission {
  return new Admission({
    membership: { isOwner: false } as unknown as MeshMembership,
    self: JOINER,
    clock: Date.now,
    isMember: () => false,
    ownerNode: () => undefined,
    openStream: () => Promise.reject(new Error('not used')),
  });
}

/** `promise`, or a failure if it takes longer than `ms` (the protocol's own deadline is 10 s). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Resolves once `stream` is reset or closed, with its final status. */
function ended(stream: Stream): Promise<string> {
  if (stream.status !== 'open') return Promise.resolve(stream.status);
  return new Promise((resolve) =>
    stream.addEventListener('close', () => resolve(stream.status), { once: true }),
  );
}

test('an invite goes to the owner and its answer comes back', async () => {
  const { admission, seen } = owner();
  const [out, inbound] = await streamPair();
  const served = admission.serve(inbound, JOINER);
  await assert.rejects(
    joiner().request(out, invite),
    (error: Error) =>
      error instanceof ConfigError && /refused the invite: invite expired/.test(error.message),
  );
  await served;
  assert.deepEqual(seen, [40]);
});

test('an oversize or cut-short request is refused and the owner keeps serving', async () => {
  const { admission, seen } = owner();
  {
    // Only the prefix of a 9 KiB request: refused on the prefix, nothing buffered.
    const [out, inbound] = await streamPair();
    const served = admission.serve(inbound, JOINER);
    out.send(lengthPrefix(9 * 1024));
    await within(served, 2_000);
    assert.equal(inbound.status, 'aborted');
    assert.notEqual(await ended(out), 'closed', 'the joiner sees a reset, not an answer');
  }
  {
    const [out, inbound] = await streamPair();
    const served = admission.serve(inbound, JOINER);
    const request = toBinary(AdmitRequestSchema, create(AdmitRequestSchema, { invite }));
    out.send(encodeFrame(request).subarray(0, 10));
    await out.close();
    await served;
    assert.equal(inbound.status, 'aborted');
  }
  assert.deepEqual(seen, [], 'neither reached the owner');
  const [out, inbound] = await streamPair();
  const served = admission.serve(inbound, JOINER);
  await assert.rejects(joiner().request(out, invite), /invite expired/);
  await served;
  assert.deepEqual(seen, [40]);
});

test('a reply over 8 MiB is refused on its length prefix and the stream reset', async () => {
  const [out, inbound] = await streamPair();
  const hostile = (async () => {
    const lp = frameStream(inbound);
    fromBinary(AdmitRequestSchema, (await lp.read()).subarray());
    inbound.send(lengthPrefix(MAX_FRAME_BYTES + 1));
  })();
  await assert.rejects(joiner().request(out, invite), { name: 'InvalidDataLengthError' });
  await hostile;
  assert.equal(out.status, 'aborted');
});
