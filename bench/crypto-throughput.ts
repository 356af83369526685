/**
 * End-to-end encryption cost (SPEC §5), in-process, no network:
 *   - seal / open of a 4 KB request envelope (µs per op: the latency E2E adds to a request);
 *   - 1 MiB response body through ResponseSealer / openResponse (MB/s), as one chunk and as
 *     64 KiB transport-sized chunks;
 *   - 1 MiB request body through sealRequest / openRequest (MB/s);
 *   - small SSE-sized frames (µs per frame: the per-token overhead of a streamed answer);
 *   - one 64-byte data frame on a long-lived stream (µs per frame, session set-up excluded);
 *   - a whole exchange as the routing benchmark makes it (4 KB request, 64-token streamed answer
 *     of ~12 KB): everything encryption costs one request, sender and host together.
 *
 *   node bench/crypto-throughput.ts
 */
import { openRequest, sealRequest, stampSentAt } from '../src/crypto/envelope.ts';
import { InferenceKeyring } from '../src/crypto/inference-keys.ts';
import { ReplayGuard } from '../src/crypto/replay-guard.ts';
import { openResponse, ResponseOpener, ResponseSealer } from '../src/crypto/response-frames.ts';
import type { SenderSession } from '../src/crypto/sessions.ts';
import { printTable } from './lib/load.ts';

export interface CryptoBenchRow {
  benchmark: string;
  /** Bytes of plaintext processed per operation. */
  bytes: number;
  iterations: number;
  usPerOp: number;
  mbPerSec: number;
}

const MiB = 1024 * 1024;
const MIN_SAMPLE_MS = 300;
const MAX_ITERATIONS = 20_000;

function request(totalBytes: number): Uint8Array {
  const head = 'POST /v1/chat/completions HTTP/1.1\r\nhost: mesh\r\ncontent-type: application/json\r\n';
  const bodyLength = Math.max(0, totalBytes - head.length - 60);
  const body = Buffer.alloc(bodyLength, 'a');
  return stampSentAt(
    Buffer.concat([Buffer.from(`${head}content-length: ${bodyLength}\r\n\r\n`), body]),
    Date.now(),
  );
}

/** Repeats `op` until MIN_SAMPLE_MS have passed (after one warm-up call). */
async function measure(
  benchmark: string,
  bytes: number,
  op: () => unknown | Promise<unknown>,
): Promise<CryptoBenchRow> {
  await op();
  let iterations = 0;
  const started = performance.now();
  let elapsed = 0;
  while (elapsed < MIN_SAMPLE_MS && iterations < MAX_ITERATIONS) {
    await op();
    iterations++;
    elapsed = performance.now() - started;
  }
  const usPerOp = (elapsed * 1000) / iterations;
  return { benchmark, bytes, iterations, usPerOp, mbPerSec: bytes / usPerOp };
}

async function drain(source: AsyncIterable<Uint8Array>): Promise<number> {
  let total = 0;
  for await (const chunk of source) total += chunk.byteLength;
  return total;
}

async function* pieces(parts: Uint8Array[], size: number): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    for (let offset = 0; offset < part.byteLength; offset += size) yield part.subarray(offset, offset + size);
  }
}

export async function runCryptoBench(): Promise<CryptoBenchRow[]> {
  const keyring = new InferenceKeyring();
  // Large enough for every envelope the bench opens.
  const guard = new ReplayGuard({ maxEntries: 10 * MAX_ITERATIONS });
  const hostKey = keyring.current().publicKey;
  const open = (envelope: Uint8Array) =>
    openRequest(envelope, { keyring, replayGuard: guard, maxPlaintextBytes: 2 * MiB });
  const rows: CryptoBenchRow[] = [];
  try {
    const small = request(4096);
    rows.push(
      await measure('request 4 KB: seal', small.byteLength, () =>
        sealRequest(small, hostKey).session.dispose(),
      ),
    );
    rows.push(
      await measure('request 4 KB: seal + open', small.byteLength, () => {
        const { envelope, session } = sealRequest(small, hostKey);
        open(envelope).session.dispose();
        session.dispose();
      }),
    );

    // The routing benchmark's streamed request, end to end: what E2E adds to the CPU the two
    // nodes spend on it (three X25519 operations, the envelope, the answer's frames).
    const answer = Buffer.alloc(64 * 180, 'a');
    rows.push(
      await measure(
        'exchange: 4 KB request + 64-token answer, both sides',
        small.byteLength + answer.byteLength,
        async () => {
          const { envelope, session } = sealRequest(small, hostKey);
          const sealer = new ResponseSealer(open(envelope).session);
          const half = answer.byteLength / 2;
          const wire = [
            sealer.data([answer.subarray(0, half)]),
            sealer.data([answer.subarray(half)]),
            sealer.end(),
          ];
          if ((await drain(openResponse(pieces(wire, 64 * 1024), session))) !== answer.byteLength) {
            throw new Error('bench: answer size mismatch');
          }
        },
      ),
    );

    const big = request(MiB);
    rows.push(
      await measure('request 1 MiB: seal', big.byteLength, () => sealRequest(big, hostKey).session.dispose()),
    );
    rows.push(
      await measure('request 1 MiB: seal + open', big.byteLength, () => {
        const { envelope, session } = sealRequest(big, hostKey);
        open(envelope).session.dispose();
        session.dispose();
      }),
    );

    const body = Buffer.alloc(MiB, 0x61);
    // A fresh request exchange per response: sessions are single-use.
    const sessions = () => {
      const { envelope, session } = sealRequest(small, hostKey);
      return { sender: session, host: open(envelope).session };
    };
    const sealResponse = (chunkSize: number): { parts: Uint8Array[]; sender: SenderSession } => {
      const { sender, host } = sessions();
      const sealer = new ResponseSealer(host);
      const parts = [sealer.header()];
      for (let offset = 0; offset < body.byteLength; offset += chunkSize) {
        parts.push(sealer.data(body.subarray(offset, offset + chunkSize)));
      }
      parts.push(sealer.end());
      return { parts, sender };
    };
    for (const [label, chunkSize] of [
      ['1 chunk', MiB],
      ['64 KiB chunks', 64 * 1024],
    ] as const) {
      rows.push(
        await measure(`response 1 MiB (${label}): encrypt`, MiB, () => {
          const { sender } = sealResponse(chunkSize);
          sender.dispose();
        }),
      );
      rows.push(
        await measure(`response 1 MiB (${label}): encrypt + decrypt`, MiB, async () => {
          const { parts, sender } = sealResponse(chunkSize);
          const total = await drain(openResponse(pieces(parts, 64 * 1024), sender));
          if (total !== MiB) throw new Error('bench: response size mismatch');
        }),
      );
    }

    const token = Buffer.from('data: {"choices":[{"delta":{"content":" token"}}]}\n\n');
    rows.push(
      await measure('SSE frame (~60 B): encrypt + decrypt, 100 frames', token.byteLength * 100, async () => {
        const { sender, host } = sessions();
        const sealer = new ResponseSealer(host);
        async function* stream() {
          yield sealer.header();
          for (let i = 0; i < 100; i++) yield sealer.data(token);
          yield sealer.end();
        }
        await drain(openResponse(stream(), sender));
      }),
    );

    // Per-frame cost alone: one stream carries every measured frame, so the request exchange
    // (and its X25519 operations) is outside the loop.
    const frame64 = Buffer.alloc(64, 0x61);
    for (const decrypt of [false, true]) {
      const { sender, host } = sessions();
      const sealer = new ResponseSealer(host);
      const opener = new ResponseOpener(sender);
      opener.push(sealer.header());
      rows.push(
        await measure(`frame 64 B: ${decrypt ? 'encrypt + decrypt' : 'encrypt'}`, 64, () => {
          const bytes = sealer.data(frame64);
          if (decrypt && opener.push(bytes)[0]?.byteLength !== 64) throw new Error('bench: frame mismatch');
        }),
      );
      const end = sealer.end();
      if (decrypt) {
        opener.push(end);
        opener.finish();
      }
      sender.dispose();
    }
    rows.push(await replayGuardRow());
  } finally {
    keyring.destroy();
  }
  return rows;
}

/** The host's replay check with a million keys already held (a busy host's 5-minute window). */
async function replayGuardRow(): Promise<CryptoBenchRow> {
  let nowMs = Date.now();
  // Room above the million held, for the measured calls (the default cap is exactly 1M).
  const guard = new ReplayGuard({ now: () => nowMs, maxEntries: 1_100_000 });
  const key = Buffer.alloc(32);
  const before = process.memoryUsage().arrayBuffers;
  let counter = 0;
  const remember = () => {
    counter += 1;
    key.writeUInt32LE(counter, 0);
    key.writeUInt32LE(Math.imul(counter, 0x9e3779b1) >>> 0, 4);
    guard.checkAndRemember(key, nowMs);
  };
  for (let i = 0; i < 1_000_000; i++) {
    if (i % 5000 === 0) nowMs += 1000; // 200 s of arrivals: most of the window's slices in use
    remember();
  }
  const bytesPerKey = Math.round((process.memoryUsage().arrayBuffers - before) / 1_000_000);
  return measure(`replay check + remember, 1M keys held (${bytesPerKey} B/key)`, 32, remember);
}

if (import.meta.main) {
  const rows = await runCryptoBench();
  printTable(
    'E2E crypto (NaCl box via sodium-native; response frames on the precomputed key), single thread',
    ['benchmark', 'bytes/op', 'iterations', 'µs/op', 'MB/s'],
    rows.map((r) => [r.benchmark, r.bytes, r.iterations, r.usPerOp, r.mbPerSec]),
  );
}
