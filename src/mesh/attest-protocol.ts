import { randomBytes } from 'node:crypto';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AttestationError } from '../attestation/errors.ts';
import { answerChallenge, NONCE_BYTES, verifyChallengeAnswer } from '../attestation/liveness.ts';
import type { AttestationKeyProvider } from '../attestation/providers/types.ts';
import { AttestChallengeSchema, AttestResponseSchema } from '../proto/gen/mesh_pb.js';
import { decodeFrames, encodeFrame } from './frames.ts';
import type { ByteStream } from './types.ts';

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Responder side of /mesh-llm/attest/1.0.0: reads one AttestChallenge, answers one
 * AttestResponse signed by `provider` (or with `error` when this node has no key).
 * Never throws: a malformed or slow challenge aborts the stream.
 */
export async function handleAttestStream(
  stream: ByteStream,
  provider: AttestationKeyProvider | undefined,
  options: {
    timeoutMs?: number;
    /** Signs the challenge's nonce (e.g. through a FairChallengeSigner); default: the provider, directly. */
    sign?: (nonce: Uint8Array) => Promise<Uint8Array>;
  } = {},
): Promise<void> {
  try {
    const frame = await withTimeout(
      firstFrame(stream, 'stream closed before a challenge arrived'),
      options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      stream,
    );
    const challenge = fromBinary(AttestChallengeSchema, frame);
    let response: ReturnType<typeof create<typeof AttestResponseSchema>>;
    if (challenge.nonce.byteLength !== NONCE_BYTES) {
      response = create(AttestResponseSchema, { error: 'nonce must be 32 bytes' });
    } else if (provider === undefined) {
      response = create(AttestResponseSchema, { error: 'no attestation key' });
    } else {
      const sign = options.sign ?? ((nonce: Uint8Array) => answerChallenge(provider, nonce));
      try {
        response = create(AttestResponseSchema, {
          signature: await sign(challenge.nonce),
          sePublicKey: Buffer.from(provider.publicKey()).toString('base64'),
        });
      } catch (error) {
        if (!(error instanceof AttestationError)) throw error;
        response = create(AttestResponseSchema, { error: error.message });
      }
    }
    await stream.write(encodeFrame(toBinary(AttestResponseSchema, response)));
    await stream.closeWrite();
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error('attest handler failed'));
  }
}

/**
 * Challenger side: sends a fresh 32-byte nonce and checks the answer is signed by
 * `expectedSePublicKeyB64`. Any failure (timeout, wrong key, bad signature, error reply) is `false`.
 */
export async function challengePeer(
  stream: ByteStream,
  expectedSePublicKeyB64: string,
  options: { timeoutMs?: number } = {},
): Promise<boolean> {
  const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  try {
    const payload = toBinary(AttestChallengeSchema, create(AttestChallengeSchema, { nonce }));
    const reply = await withTimeout(
      exchangeFrame(stream, payload),
      options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      stream,
    );
    const response = fromBinary(AttestResponseSchema, reply);
    if (response.error !== '' || response.sePublicKey !== expectedSePublicKeyB64) return false;
    return verifyChallengeAnswer(expectedSePublicKeyB64, nonce, response.signature);
  } catch (error) {
    stream.abort(error instanceof Error ? error : new Error('attest challenge failed'));
    return false;
  }
}

/** Writes one frame, half-closes, and reads the one frame answering it. */
async function exchangeFrame(stream: ByteStream, payload: Uint8Array): Promise<Uint8Array> {
  await stream.write(encodeFrame(payload));
  await stream.closeWrite();
  return firstFrame(stream, 'stream closed without a reply');
}

async function firstFrame(stream: ByteStream, missing: string): Promise<Uint8Array> {
  for await (const frame of decodeFrames(stream.source)) return frame;
  throw new Error(missing);
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, stream: ByteStream): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new Error(`attest exchange timed out after ${timeoutMs} ms`);
      stream.abort(error);
      reject(error);
    }, timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
