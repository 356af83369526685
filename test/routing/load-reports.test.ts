import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../src/log.ts';
import { encodeFrame } from '../../src/mesh/frames.ts';
import type { ByteStream, MeshService, PeerRecord } from '../../src/mesh/types.ts';
import type { LoadBoard } from '../../src/routing/load-board.ts';
import {
  decodeLoadReport,
  encodeLoadReport,
  LoadSubscriptions,
  MAX_LOAD_FRAME_BYTES,
  MAX_MODEL_NAME,
  MAX_REPORTED_MODELS,
} from '../../src/routing/load-reports.ts';
import { lengthPrefix, waitFor } from '../mesh/helpers.ts';

const HOST = 'c'.repeat(64);

const report = (served: number) =>
  encodeFrame(
    encodeLoadReport([{ modelName: 'm', slots: 4, inFlight: 1, queued: 0, servedLastMinute: served }]),
  );

/** A host's side of one load stream: sends `chunks`, then ends (or, with `hold`, waits to be reset). */
function hostStream(chunks: Uint8Array[], hold: boolean): ByteStream & { state: { aborted?: Error } } {
  const state: { aborted?: Error; reset?: () => void } = {};
  async function* source() {
    yield* chunks;
    if (hold) {
      await new Promise<void>((resolve) => {
        state.reset = resolve;
      });
    }
    if (state.aborted) throw state.aborted;
  }
  return {
    state,
    source: source(),
    write: async () => undefined,
    closeWrite: async () => undefined,
    abort(error) {
      state.aborted ??= error;
      state.reset?.();
    },
  };
}

test('a load frame over its cap or cut short is refused, and the subscription carries on', async () => {
  const full = report(7);
  const streams = [
    // A good report, then a prefix claiming more than a report may be: refused at once.
    hostStream([report(5), lengthPrefix(MAX_LOAD_FRAME_BYTES + 1)], true),
    hostStream([full.subarray(0, full.byteLength - 1)], false),
    hostStream([report(9)], true),
  ];
  let opened = 0;
  const mesh = {
    peers: () => [{ endpointId: HOST, announcement: { modelCapacity: [{}] } } as unknown as PeerRecord],
    onPeerEvent: () => () => undefined,
    openStream: async () => streams[opened++] ?? hostStream([], true),
  } as unknown as Pick<MeshService, 'openStream' | 'peers' | 'onPeerEvent'>;
  const reported: number[] = [];
  let forgotten = 0;
  const board = {
    report: (_host: string, models: Array<{ servedLastMinute: number }>) =>
      reported.push(models[0]!.servedLastMinute),
    forget: () => forgotten++,
  } as unknown as LoadBoard;
  const subscriptions = new LoadSubscriptions({ mesh, board, logger: silentLogger(), retryMs: 10 });
  subscriptions.start();
  try {
    await waitFor(() => reported.includes(9), 'the third stream’s report', 5_000);
    assert.deepEqual(reported, [5, 9], 'the cut-short report was never believed');
    assert.equal(
      streams[0]!.state.aborted?.name,
      'InvalidDataLengthError',
      'the oversize frame reset its stream',
    );
    assert.equal(streams[1]!.state.aborted?.name, 'UnexpectedEOFError');
    assert.ok(forgotten >= 2, 'the host’s load is forgotten while no stream reports it');
    assert.ok(subscriptions.following(HOST));
  } finally {
    subscriptions.stop();
  }
  assert.ok(streams[2]!.state.aborted, 'stopping resets the live stream');
});

test('the largest valid load report fits in one frame and decodes', () => {
  const models = Array.from({ length: MAX_REPORTED_MODELS }, (_, i) => ({
    modelName: `${i}`.padStart(MAX_MODEL_NAME, '\u20ac'),
    slots: 1_000_000,
    inFlight: 1_000_000,
    queued: 1_000_000,
    servedLastMinute: 1_000_000,
  }));
  const bytes = encodeLoadReport(models);
  assert.ok(bytes.byteLength <= MAX_LOAD_FRAME_BYTES, `${bytes.byteLength} > ${MAX_LOAD_FRAME_BYTES}`);
  assert.deepEqual(decodeLoadReport(bytes), models);
});
