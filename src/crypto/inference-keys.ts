/**
 * The node's X25519 inference keypair (SPEC §5 "Keys"): memory only, rotated on a schedule, the
 * previous secret kept for a grace period so requests sealed to it just before a rotation still
 * open. Secrets live in sodium_malloc memory and are freed when they leave the grace period.
 */
import { decodeBase64Strict, encodeBase64 } from '../encoding/base64.ts';
import { E2EError } from './errors.ts';
import { boxKeypair, bytesEqual, PUBLIC_KEY_BYTES, wipe } from './sodium.ts';

export const DEFAULT_ROTATION_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_GRACE_MS = 10 * 60 * 1000;

export interface InferencePublicKeyInfo {
  publicKey: Uint8Array;
  publicKeyBase64: string;
  createdAtMs: number;
}

/** What openRequest needs from a keyring; InferenceKeyring implements it. */
export interface InferenceKeySource {
  current(): { publicKey: Uint8Array };
  secretFor(publicKey: Uint8Array): Uint8Array | undefined;
  /** Current key first, then keys still inside their grace period. Absent = current only. */
  activePublicKeys?(): Uint8Array[];
}

export type RotateListener = (info: InferencePublicKeyInfo) => void;

interface KeyEntry {
  publicKey: Buffer;
  publicKeyBase64: string;
  secretKey: Buffer;
  createdAtMs: number;
  /** Set when the key is replaced: it still opens requests until this instant. */
  retiredUntilMs?: number;
}

export interface InferenceKeyringOptions {
  rotationMs?: number;
  graceMs?: number;
  now?: () => number;
}

export class InferenceKeyring implements InferenceKeySource {
  readonly rotationMs: number;
  readonly graceMs: number;
  readonly #now: () => number;
  #current: KeyEntry;
  #previous: KeyEntry[] = [];
  #listeners = new Set<RotateListener>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #destroyed = false;

  constructor(options: InferenceKeyringOptions = {}) {
    this.rotationMs = positive(options.rotationMs ?? DEFAULT_ROTATION_MS, 'rotationMs');
    this.graceMs = nonNegative(options.graceMs ?? DEFAULT_GRACE_MS, 'graceMs');
    this.#now = options.now ?? Date.now;
    this.#current = this.#generate();
  }

  current(): InferencePublicKeyInfo {
    this.#assertAlive();
    const entry = this.#current;
    return {
      publicKey: Uint8Array.from(entry.publicKey),
      publicKeyBase64: entry.publicKeyBase64,
      createdAtMs: entry.createdAtMs,
    };
  }

  /**
   * The secret for `publicKey` if it is the current key or a previous key inside its grace
   * period. The returned buffer is owned by the keyring and freed when the key expires: copy it
   * (openRequest does) if it must outlive the call.
   */
  secretFor(publicKey: Uint8Array): Uint8Array | undefined {
    if (this.#destroyed || publicKey.byteLength !== PUBLIC_KEY_BYTES) return undefined;
    this.#prune();
    if (bytesEqual(this.#current.publicKey, publicKey)) return this.#current.secretKey;
    for (const entry of this.#previous) {
      if (bytesEqual(entry.publicKey, publicKey)) return entry.secretKey;
    }
    return undefined;
  }

  activePublicKeys(): Uint8Array[] {
    if (this.#destroyed) return [];
    this.#prune();
    return [this.#current, ...this.#previous].map((entry) => Uint8Array.from(entry.publicKey));
  }

  /** Makes a new current key; the old one keeps opening requests for graceMs. */
  rotate(): InferencePublicKeyInfo {
    this.#assertAlive();
    const old = this.#current;
    old.retiredUntilMs = this.#now() + this.graceMs;
    this.#current = this.#generate();
    this.#previous.unshift(old);
    this.#prune();
    const info = this.current();
    for (const listener of this.#listeners) {
      // A failing listener (e.g. a re-announce) must not stop rotation or the other listeners.
      try {
        listener(info);
      } catch {}
    }
    if (this.#running) this.#schedule();
    return info;
  }

  /** Subscribes to rotations (so the node can re-announce); returns the unsubscribe function. */
  onRotate(listener: RotateListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Starts the rotation/expiry schedule. The timer is unref'd: it never keeps the process alive. */
  start(): void {
    this.#assertAlive();
    if (this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Stops the schedule and frees every secret. The keyring is unusable afterwards. */
  destroy(): void {
    this.stop();
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const entry of [this.#current, ...this.#previous]) wipe(entry.secretKey);
    this.#previous = [];
    this.#listeners.clear();
  }

  #generate(): KeyEntry {
    const { publicKey, secretKey } = boxKeypair();
    return { publicKey, secretKey, publicKeyBase64: encodeBase64(publicKey), createdAtMs: this.#now() };
  }

  #prune(): void {
    const now = this.#now();
    const keep: KeyEntry[] = [];
    for (const entry of this.#previous) {
      if ((entry.retiredUntilMs ?? 0) > now) keep.push(entry);
      else wipe(entry.secretKey);
    }
    this.#previous = keep;
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    const now = this.#now();
    let next = this.#current.createdAtMs + this.rotationMs;
    for (const entry of this.#previous) next = Math.min(next, entry.retiredUntilMs ?? next);
    // setTimeout caps at 2^31-1 ms; a long rotation just re-arms.
    const delay = Math.min(Math.max(0, next - now), 2 ** 31 - 1);
    this.#timer = setTimeout(() => this.#tick(), delay);
    this.#timer.unref();
  }

  #tick(): void {
    this.#timer = undefined;
    if (!this.#running || this.#destroyed) return;
    if (this.#now() >= this.#current.createdAtMs + this.rotationMs) {
      this.rotate(); // re-schedules
    } else {
      this.#prune();
      this.#schedule();
    }
  }

  #assertAlive(): void {
    if (this.#destroyed) throw new E2EError('unknown_key', 'the inference keyring was destroyed');
  }
}

/** Decodes an announced inference key (field 36): canonical standard base64 of exactly 32 bytes. */
export function decodeInferencePublicKey(b64: string): Uint8Array {
  if (typeof b64 !== 'string' || b64.length > 64) {
    throw new E2EError('invalid_key', 'inference public key is not valid base64');
  }
  const bytes = decodeBase64Strict(b64);
  if (!bytes) throw new E2EError('invalid_key', 'inference public key is not valid base64');
  if (bytes.byteLength !== PUBLIC_KEY_BYTES) {
    throw new E2EError('invalid_key', `inference public key must be ${PUBLIC_KEY_BYTES} bytes`);
  }
  return new Uint8Array(bytes);
}

function positive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number`);
  return value;
}

function nonNegative(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number`);
  return value;
}
