/**
 * The encrypted request envelope (SPEC §5, wire format v1):
 *   0xE1 || UTF-8 JSON {"v":1,"ephemeral_public_key":B64,"ciphertext":B64}
 *   ciphertext = nonce(24) || crypto_box(plaintext, nonce, host_pk, ephemeral_sk)
 * The plaintext is a whole HTTP/1.1 request carrying `x-mesh-sent-at: <unix ms>`; the host
 * rejects stale, future-dated and replayed envelopes. Both sides box via the precomputed key
 * (boxBeforeNm + secretbox, byte-identical to crypto_box_easy) and hand it to the session, so
 * the response stream reuses it instead of repeating the X25519 operation.
 */
import { base64Length, decodeBase64Strict, encodeBase64 } from '../encoding/base64.ts';
import { bufferView } from '../encoding/bytes.ts';
import { E2EError } from './errors.ts';
import type { InferenceKeySource } from './inference-keys.ts';
import type { EphemeralExchange } from './prepared-exchanges.ts';
import { DEFAULT_FUTURE_SKEW_MS, DEFAULT_REPLAY_WINDOW_MS, type ReplayGuard } from './replay-guard.ts';
import { HostSession, SenderSession } from './sessions.ts';
import {
  boxBeforeNm,
  boxOpenAfterNmInto,
  boxSealAfterNmInto,
  ephemeralBoxKey,
  isCanonicalPublicKey,
  MAC_BYTES,
  NONCE_BYTES,
  PUBLIC_KEY_BYTES,
  randomNonce,
  wipe,
} from './sodium.ts';

export { ReplayGuard, type ReplayGuardOptions } from './replay-guard.ts';
export { HostSession, SenderSession } from './sessions.ts';

export const E2E_MAGIC = 0xe1;
export const ENVELOPE_VERSION = 1;
export const DEFAULT_MAX_PLAINTEXT_BYTES = 8 * 1024 * 1024;
export const SENT_AT_HEADER = 'x-mesh-sent-at';
/** Header blocks longer than this are not searched for x-mesh-sent-at. */
export const MAX_HEADER_BLOCK_BYTES = 64 * 1024;

/**
 * The exact JSON layout sealRequest writes: `HEAD <key b64> MIDDLE <ciphertext b64> TAIL`. The
 * host reads this layout without a JSON parse; anything else (other key order, whitespace, extra
 * fields, escapes) takes the general JSON path and is judged by the same rules.
 */
const CANONICAL_HEAD = `{"v":${ENVELOPE_VERSION},"ephemeral_public_key":"`;
const CANONICAL_MIDDLE = '","ciphertext":"';
const CANONICAL_TAIL = '"}';
const CANONICAL_KEY_B64_LENGTH = base64Length(PUBLIC_KEY_BYTES);
const CANONICAL_HEAD_BYTES = Buffer.from(CANONICAL_HEAD, 'latin1');
const CANONICAL_MIDDLE_BYTES = Buffer.from(CANONICAL_MIDDLE, 'latin1');
const CANONICAL_TAIL_BYTES = Buffer.from(CANONICAL_TAIL, 'latin1');

/** Room for JSON whitespace, key order and unknown extra fields a future sender may add. */
const ENVELOPE_JSON_SLACK = 4096;

/** True when the first byte of an /mesh-llm/http stream marks an encrypted envelope. */
export function isEncryptedStream(first: number | Uint8Array): boolean {
  const byte = typeof first === 'number' ? first : first[0];
  return byte === E2E_MAGIC;
}

/** The largest envelope that can hold `maxPlaintextBytes` of plaintext; read no more than this. */
export function maxEnvelopeBytes(maxPlaintextBytes: number = DEFAULT_MAX_PLAINTEXT_BYTES): number {
  return (
    1 +
    '{"v":1,"ephemeral_public_key":"","ciphertext":""}'.length +
    base64Length(PUBLIC_KEY_BYTES) +
    base64Length(NONCE_BYTES + MAC_BYTES + maxPlaintextBytes) +
    ENVELOPE_JSON_SLACK
  );
}

/**
 * Seals one request to the host's inference key with a fresh ephemeral keypair (forward
 * secrecy): `prepared` when given (an unused exchange made for this host key by
 * PreparedExchanges; this call takes ownership of its key), else one made here. Keep `session`
 * to open the response; it is single-use.
 */
export function sealRequest(
  plaintext: Uint8Array,
  hostPublicKey: Uint8Array,
  prepared?: EphemeralExchange,
): { envelope: Uint8Array; session: SenderSession } {
  if (!(hostPublicKey instanceof Uint8Array) || hostPublicKey.byteLength !== PUBLIC_KEY_BYTES) {
    if (prepared) wipe(prepared.sharedKey);
    throw new E2EError('invalid_key', `host inference key must be ${PUBLIC_KEY_BYTES} bytes`);
  }
  const hostKey = Uint8Array.from(hostPublicKey);
  let ephemeral: EphemeralExchange;
  try {
    // Refuses low-order public keys (all-zero shared secret), as crypto_box does.
    ephemeral = prepared ?? ephemeralBoxKey(hostKey);
  } catch (cause) {
    throw new E2EError('invalid_key', 'host inference key is not a usable X25519 key', { cause });
  }
  const { ephemeralPublicKey, sharedKey } = ephemeral;
  const ciphertext = Buffer.allocUnsafe(NONCE_BYTES + MAC_BYTES + plaintext.byteLength);
  const nonce = ciphertext.subarray(0, NONCE_BYTES);
  randomNonce(nonce);
  boxSealAfterNmInto(ciphertext.subarray(NONCE_BYTES), plaintext, nonce, sharedKey);
  // Written piece by piece into one buffer (pure ASCII), not through one big JSON string.
  const head = `${CANONICAL_HEAD}${encodeBase64(ephemeralPublicKey)}${CANONICAL_MIDDLE}`;
  const body = encodeBase64(ciphertext);
  const envelope = Buffer.allocUnsafe(1 + head.length + body.length + CANONICAL_TAIL.length);
  envelope[0] = E2E_MAGIC;
  let at = 1 + envelope.write(head, 1, 'latin1');
  at += envelope.write(body, at, 'latin1');
  envelope.write(CANONICAL_TAIL, at, 'latin1');
  return {
    envelope,
    session: new SenderSession({
      ephemeralPublicKey: new Uint8Array(ephemeralPublicKey),
      hostPublicKey: hostKey,
      sharedKey,
    }),
  };
}

export interface OpenRequestOptions {
  keyring: InferenceKeySource;
  replayGuard: ReplayGuard;
  /** Plaintext cap (default 8 MiB). */
  maxPlaintextBytes?: number;
  now?: () => number;
  /** Oldest acceptable x-mesh-sent-at (default 5 min); keep it ≤ the guard's window. */
  maxAgeMs?: number;
  /** Furthest-future acceptable x-mesh-sent-at (default 30 s). */
  maxFutureSkewMs?: number;
  /** Who sent it (the mesh peer), so one sender cannot fill the replay guard alone. */
  sender?: string;
}

/**
 * Opens a request envelope with the current inference key or one still in its grace period.
 * Throws E2EError for anything that is not a fresh, authentic, first-seen v1 envelope.
 */
export function openRequest(
  envelope: Uint8Array,
  options: OpenRequestOptions,
): { plaintext: Uint8Array; session: HostSession } {
  const maxPlaintext = options.maxPlaintextBytes ?? DEFAULT_MAX_PLAINTEXT_BYTES;
  const now = options.now ?? Date.now;
  const maxAgeMs = options.maxAgeMs ?? Math.min(DEFAULT_REPLAY_WINDOW_MS, options.replayGuard.windowMs);
  const maxFutureMs =
    options.maxFutureSkewMs ?? Math.min(DEFAULT_FUTURE_SKEW_MS, options.replayGuard.futureSkewMs);

  if (!(envelope instanceof Uint8Array) || envelope.byteLength === 0) {
    throw new E2EError('truncated', 'empty request envelope');
  }
  if (envelope[0] !== E2E_MAGIC) throw new E2EError('bad_magic', 'request does not start with 0xE1');
  if (envelope.byteLength > maxEnvelopeBytes(maxPlaintext)) {
    throw new E2EError('too_large', `request envelope exceeds the ${maxPlaintext}-byte plaintext cap`);
  }

  const { ephemeralPublicKey, ciphertext } = parseEnvelopeJson(envelope.subarray(1));
  if (ephemeralPublicKey.byteLength !== PUBLIC_KEY_BYTES) {
    throw new E2EError('malformed_envelope', 'ephemeral_public_key must be 32 bytes');
  }
  // The replay guard remembers key bytes, so each key must have only one spelling.
  if (!isCanonicalPublicKey(ephemeralPublicKey)) {
    throw new E2EError('malformed_envelope', 'ephemeral_public_key is not a canonical X25519 key');
  }
  if (ciphertext.byteLength < NONCE_BYTES + MAC_BYTES) {
    throw new E2EError('malformed_envelope', 'ciphertext is too short');
  }
  const plaintextLength = ciphertext.byteLength - NONCE_BYTES - MAC_BYTES;
  if (plaintextLength > maxPlaintext) {
    throw new E2EError('too_large', `request plaintext exceeds ${maxPlaintext} bytes`);
  }
  if (options.replayGuard.has(ephemeralPublicKey, now())) {
    throw new E2EError('replay', 'request envelope was already received (replay)');
  }

  const candidates = options.keyring.activePublicKeys?.() ?? [options.keyring.current().publicKey];
  if (candidates.length === 0) throw new E2EError('unknown_key', 'no inference key is available');
  const nonce = ciphertext.subarray(0, NONCE_BYTES);
  const box = ciphertext.subarray(NONCE_BYTES);
  // Opened in place (the decoded ciphertext is ours): libsodium checks the tag before it writes,
  // so a failed attempt under one key leaves the box intact for the next.
  const plaintext = box.subarray(MAC_BYTES);
  let hostPublicKey: Uint8Array | undefined;
  let sharedKey: Uint8Array | undefined;
  for (const candidate of candidates) {
    const secret = options.keyring.secretFor(candidate);
    if (!secret) continue;
    let key: Uint8Array;
    try {
      key = boxBeforeNm(ephemeralPublicKey, secret);
    } catch (error) {
      // A low-order ephemeral key: crypto_box_open fails the same way, so report it like one.
      if (error instanceof E2EError && error.code === 'invalid_key') continue;
      throw error;
    }
    if (boxOpenAfterNmInto(plaintext, box, nonce, key)) {
      hostPublicKey = Uint8Array.from(candidate);
      sharedKey = key;
      break;
    }
    wipe(key);
  }
  if (!hostPublicKey || !sharedKey) {
    throw new E2EError('decrypt_failed', 'request envelope did not decrypt under any inference key');
  }

  try {
    const sentAtMs = readSentAt(plaintext);
    const nowMs = now();
    if (sentAtMs === undefined) throw new E2EError('stale', `request has no valid ${SENT_AT_HEADER} header`);
    if (nowMs - sentAtMs > maxAgeMs) throw new E2EError('stale', 'request envelope is too old');
    if (sentAtMs - nowMs > maxFutureMs)
      throw new E2EError('stale', 'request envelope is dated in the future');
    options.replayGuard.checkAndRemember(ephemeralPublicKey, nowMs, options.sender);
    const session = new HostSession({
      senderEphemeralPublicKey: Uint8Array.from(ephemeralPublicKey),
      hostPublicKey,
      sentAtMs,
      sharedKey,
    });
    return { plaintext, session };
  } catch (error) {
    plaintext.fill(0);
    wipe(sharedKey);
    throw error;
  }
}

/**
 * Reads an envelope from a stream, refusing as soon as it exceeds what `maxPlaintextBytes` of
 * plaintext can produce (so an oversized request is never buffered whole).
 */
export async function collectEnvelope(
  source: AsyncIterable<Uint8Array>,
  maxPlaintextBytes: number = DEFAULT_MAX_PLAINTEXT_BYTES,
): Promise<Uint8Array> {
  const limit = maxEnvelopeBytes(maxPlaintextBytes);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of source) {
    size += chunk.byteLength;
    if (size > limit) throw new E2EError('too_large', `request envelope exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/**
 * Returns `request` (an HTTP/1.1 request) with exactly one `x-mesh-sent-at: <nowMs>` header,
 * inserted after the request line; any existing one is replaced.
 */
export function stampSentAt(request: Uint8Array, nowMs: number): Uint8Array {
  const bytes = bufferView(request);
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) throw new E2EError('malformed_envelope', 'request has no HTTP header block');
  const lines = bytes.toString('latin1', 0, end).split('\r\n');
  const kept = lines.filter((line, i) => i === 0 || headerName(line) !== SENT_AT_HEADER);
  kept.splice(1, 0, `${SENT_AT_HEADER}: ${Math.trunc(nowMs)}`);
  const head = Buffer.from(kept.join('\r\n'), 'latin1');
  return Buffer.concat([head, bytes.subarray(end)]);
}

/** The x-mesh-sent-at value of an HTTP request's header block; undefined if absent, repeated or invalid. */
export function readSentAt(plaintext: Uint8Array): number | undefined {
  const bytes = bufferView(plaintext);
  const end = bytes.subarray(0, MAX_HEADER_BLOCK_BYTES).indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = bytes.toString('latin1', 0, end).split('\r\n');
  let value: number | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (headerName(line) !== SENT_AT_HEADER) continue;
    if (value !== undefined) return undefined; // two timestamps: ambiguous, refuse
    const raw = line.slice(line.indexOf(':') + 1).trim();
    if (!/^\d{1,15}$/.test(raw)) return undefined;
    value = Number(raw);
  }
  return value;
}

function headerName(line: string): string | undefined {
  const colon = line.indexOf(':');
  return colon > 0 ? line.slice(0, colon).trim().toLowerCase() : undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseEnvelopeJson(body: Uint8Array): { ephemeralPublicKey: Uint8Array; ciphertext: Uint8Array } {
  return parseCanonicalEnvelope(body) ?? parseAnyEnvelopeJson(body);
}

/** The fields of an envelope in exactly sealRequest's layout; undefined for any other text. */
function parseCanonicalEnvelope(
  body: Uint8Array,
): { ephemeralPublicKey: Uint8Array; ciphertext: Uint8Array } | undefined {
  const bytes = bufferView(body);
  const keyAt = CANONICAL_HEAD_BYTES.byteLength;
  const middleAt = keyAt + CANONICAL_KEY_B64_LENGTH;
  const ciphertextAt = middleAt + CANONICAL_MIDDLE_BYTES.byteLength;
  const tailAt = bytes.byteLength - CANONICAL_TAIL_BYTES.byteLength;
  if (tailAt < ciphertextAt) return undefined;
  if (
    !bytes.subarray(0, keyAt).equals(CANONICAL_HEAD_BYTES) ||
    !bytes.subarray(middleAt, ciphertextAt).equals(CANONICAL_MIDDLE_BYTES) ||
    !bytes.subarray(tailAt).equals(CANONICAL_TAIL_BYTES)
  ) {
    return undefined;
  }
  const ephemeralPublicKey = decodeBase64Strict(bytes.toString('latin1', keyAt, middleAt));
  const ciphertext = decodeBase64Strict(bytes.toString('latin1', ciphertextAt, tailAt));
  // Not canonical base64 here (e.g. a JSON escape inside a string): let the JSON path decide.
  if (!ephemeralPublicKey || !ciphertext) return undefined;
  return { ephemeralPublicKey, ciphertext };
}

function parseAnyEnvelopeJson(body: Uint8Array): { ephemeralPublicKey: Uint8Array; ciphertext: Uint8Array } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(body));
  } catch {
    throw new E2EError('malformed_envelope', 'request envelope is not UTF-8 JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new E2EError('malformed_envelope', 'request envelope is not a JSON object');
  }
  const fields = parsed as Record<string, unknown>;
  if (typeof fields.v !== 'number')
    throw new E2EError('malformed_envelope', 'request envelope has no version');
  if (fields.v !== ENVELOPE_VERSION) {
    throw new E2EError('unsupported_version', 'unsupported request envelope version');
  }
  const { ephemeral_public_key: epk, ciphertext } = fields;
  if (typeof epk !== 'string' || typeof ciphertext !== 'string') {
    throw new E2EError('malformed_envelope', 'request envelope lacks ephemeral_public_key or ciphertext');
  }
  const ephemeralPublicKey = epk.length <= 64 ? decodeBase64Strict(epk) : undefined;
  if (!ephemeralPublicKey) throw new E2EError('malformed_envelope', 'ephemeral_public_key is not base64');
  const ciphertextBytes = decodeBase64Strict(ciphertext);
  if (!ciphertextBytes) throw new E2EError('malformed_envelope', 'ciphertext is not base64');
  return { ephemeralPublicKey, ciphertext: ciphertextBytes };
}
