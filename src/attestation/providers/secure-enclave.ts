import { createRequire } from 'node:module';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { P256_POINT_BYTES, publicKeyFromPoint, verifyP256 } from '../ecdsa.ts';
import type { AttestationKeyProvider } from './types.ts';

/** Keychain application tag of this node's Secure Enclave key. */
export const DEFAULT_SE_KEY_TAG = 'dev.mesh-llm.attestation-key';

/**
 * The few Security-framework operations the provider needs, isolated so everything around
 * them is testable without a Mac. `KeyHandle` is an opaque platform reference (SecKeyRef).
 */
export interface SecureEnclavePlatform<KeyHandle = unknown> {
  /** The persisted private key with this tag, or undefined if none exists. */
  findKey(tag: string): KeyHandle | undefined;
  /** Creates a persisted P-256 key inside the Secure Enclave. */
  createKey(tag: string): KeyHandle;
  /** Uncompressed SEC1 point (65 bytes) of the key's public half. */
  publicKey(key: KeyHandle): Uint8Array;
  /** DER ECDSA over SHA-256(data) (ecdsaSignatureMessageX962SHA256). */
  sign(key: KeyHandle, data: Uint8Array): Promise<Uint8Array>;
  release(key: KeyHandle): void;
}

/** Secure Enclave key on Apple Silicon; the private key never leaves the enclave. */
export class SecureEnclaveKeyProvider<KeyHandle = unknown> implements AttestationKeyProvider {
  readonly kind = 'secure-enclave' as const;
  readonly hardware = true;
  readonly #platform: SecureEnclavePlatform<KeyHandle>;
  #key: KeyHandle | undefined;
  readonly #point: Uint8Array;

  private constructor(platform: SecureEnclavePlatform<KeyHandle>, key: KeyHandle, point: Uint8Array) {
    this.#platform = platform;
    this.#key = key;
    this.#point = point;
  }

  static async open<KeyHandle = unknown>(options: {
    logger: Logger;
    tag?: string;
    platform?: SecureEnclavePlatform<KeyHandle>;
  }): Promise<SecureEnclaveKeyProvider<KeyHandle>> {
    const tag = options.tag ?? DEFAULT_SE_KEY_TAG;
    const platform =
      options.platform ?? (macSecurityPlatform() as unknown as SecureEnclavePlatform<KeyHandle>);
    let key: KeyHandle | undefined;
    try {
      key = platform.findKey(tag);
      if (key === undefined) {
        key = platform.createKey(tag);
        options.logger.info({ tag }, 'created Secure Enclave attestation key');
      }
    } catch (cause) {
      throw new ConfigError(`Secure Enclave key unavailable: ${(cause as Error).message}`, { cause });
    }
    try {
      const point = platform.publicKey(key);
      if (point.byteLength !== P256_POINT_BYTES || point[0] !== 0x04) {
        throw new Error('enclave returned a public key that is not an uncompressed P-256 point');
      }
      // Self-test: the enclave's signature must verify as ECDSA P-256/SHA-256 over the data.
      const probe = Buffer.from('mesh-llm-secure-enclave-self-test');
      if (!verifyP256(publicKeyFromPoint(point), probe, await platform.sign(key, probe))) {
        throw new Error('enclave signature self-test failed');
      }
      return new SecureEnclaveKeyProvider(platform, key, new Uint8Array(point));
    } catch (cause) {
      platform.release(key);
      throw new ConfigError(`Secure Enclave key unusable: ${(cause as Error).message}`, { cause });
    }
  }

  publicKey(): Uint8Array {
    return this.#point.slice();
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    if (this.#key === undefined) throw new Error('Secure Enclave provider is closed');
    return this.#platform.sign(this.#key, data);
  }

  async close(): Promise<void> {
    if (this.#key !== undefined) this.#platform.release(this.#key);
    this.#key = undefined;
  }
}

// ---- macOS Security.framework binding (not exercised on Linux CI; see docs/attestation.md) ----

type Ptr = bigint | null;
type KoffiModule = typeof import('koffi');

const errSecItemNotFound = -25300;
const kCFNumberSInt32Type = 3;
const kSecAccessControlPrivateKeyUsage = 1 << 30;

let macPlatform: SecureEnclavePlatform<bigint> | undefined;

/** Binds Security and CoreFoundation through koffi (darwin only). */
export function macSecurityPlatform(): SecureEnclavePlatform<bigint> {
  if (macPlatform) return macPlatform;
  if (process.platform !== 'darwin') throw new Error('the Secure Enclave is only available on macOS');
  const koffi = createRequire(import.meta.url)('koffi') as KoffiModule;
  const cf = koffi.load('/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation');
  const sec = koffi.load('/System/Library/Frameworks/Security.framework/Security');
  const constant = (lib: typeof cf, name: string): bigint =>
    koffi.decode(lib.symbol(name), 'void *') as bigint;

  const CFRelease = cf.func('void CFRelease(void *cf)');
  const CFDataCreate = cf.func('void *CFDataCreate(void *alloc, const uint8_t *bytes, long length)');
  const CFDataGetLength = cf.func('long CFDataGetLength(void *data)');
  const CFDataGetBytePtr = cf.func('void *CFDataGetBytePtr(void *data)');
  const CFNumberCreate = cf.func('void *CFNumberCreate(void *alloc, long type, const int32_t *value)');
  const CFDictionaryCreateMutable = cf.func(
    'void *CFDictionaryCreateMutable(void *alloc, long capacity, void *keyCallBacks, void *valueCallBacks)',
  );
  const CFDictionarySetValue = cf.func('void CFDictionarySetValue(void *dict, void *key, void *value)');
  const CFErrorGetCode = cf.func('long CFErrorGetCode(void *err)');
  const SecItemCopyMatching = sec.func('int32_t SecItemCopyMatching(void *query, _Out_ void **result)');
  const SecKeyCreateRandomKey = sec.func('void *SecKeyCreateRandomKey(void *params, _Out_ void **error)');
  const SecKeyCopyPublicKey = sec.func('void *SecKeyCopyPublicKey(void *key)');
  const SecKeyCopyExternalRepresentation = sec.func(
    'void *SecKeyCopyExternalRepresentation(void *key, _Out_ void **error)',
  );
  const SecKeyCreateSignature = sec.func(
    'void *SecKeyCreateSignature(void *key, void *algorithm, void *data, _Out_ void **error)',
  );
  const SecAccessControlCreateWithFlags = sec.func(
    'void *SecAccessControlCreateWithFlags(void *alloc, void *protection, unsigned long flags, _Out_ void **error)',
  );

  const keyCallBacks = cf.symbol('kCFTypeDictionaryKeyCallBacks') as bigint;
  const valueCallBacks = cf.symbol('kCFTypeDictionaryValueCallBacks') as bigint;
  const kCFBooleanTrue = constant(cf, 'kCFBooleanTrue');
  const k = (name: string) => constant(sec, name);

  const cfError = (what: string, error: Ptr): Error => {
    const code = error ? Number(CFErrorGetCode(error)) : 0;
    if (error) CFRelease(error);
    const hint = code === -34018 ? ' (missing keychain entitlement: the node binary must be signed)' : '';
    return new Error(`${what} failed (OSStatus ${code})${hint}`);
  };
  const dataFrom = (bytes: Uint8Array): bigint => {
    const data = CFDataCreate(null, Buffer.from(bytes), bytes.byteLength) as Ptr;
    if (!data) throw new Error('CFDataCreate failed');
    return data;
  };
  const bytesOf = (data: bigint): Uint8Array => {
    const length = Number(CFDataGetLength(data));
    const pointer = CFDataGetBytePtr(data) as bigint;
    return new Uint8Array(Buffer.from(koffi.view(pointer, length)));
  };
  const dictionary = (entries: Array<[bigint, bigint]>): bigint => {
    const dict = CFDictionaryCreateMutable(null, 0, keyCallBacks, valueCallBacks) as bigint;
    for (const [key, value] of entries) CFDictionarySetValue(dict, key, value);
    return dict;
  };

  macPlatform = {
    findKey(tag) {
      const tagData = dataFrom(Buffer.from(tag, 'utf8'));
      const query = dictionary([
        [k('kSecClass'), k('kSecClassKey')],
        [k('kSecAttrApplicationTag'), tagData],
        [k('kSecAttrKeyType'), k('kSecAttrKeyTypeECSECPrimeRandom')],
        [k('kSecAttrKeyClass'), k('kSecAttrKeyClassPrivate')],
        [k('kSecAttrTokenID'), k('kSecAttrTokenIDSecureEnclave')],
        [k('kSecUseDataProtectionKeychain'), kCFBooleanTrue],
        [k('kSecReturnRef'), kCFBooleanTrue],
        [k('kSecMatchLimit'), k('kSecMatchLimitOne')],
      ]);
      try {
        const out: Ptr[] = [null];
        const status = SecItemCopyMatching(query, out) as number;
        if (status === errSecItemNotFound) return undefined;
        if (status !== 0 || !out[0]) throw new Error(`SecItemCopyMatching failed (OSStatus ${status})`);
        return out[0];
      } finally {
        CFRelease(query);
        CFRelease(tagData);
      }
    },
    createKey(tag) {
      const tagData = dataFrom(Buffer.from(tag, 'utf8'));
      const acError: Ptr[] = [null];
      const access = SecAccessControlCreateWithFlags(
        null,
        k('kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly'),
        kSecAccessControlPrivateKeyUsage,
        acError,
      ) as Ptr;
      if (!access) {
        CFRelease(tagData);
        throw cfError('SecAccessControlCreateWithFlags', acError[0] ?? null);
      }
      const bits = CFNumberCreate(null, kCFNumberSInt32Type, [256]) as bigint;
      const privateAttrs = dictionary([
        [k('kSecAttrIsPermanent'), kCFBooleanTrue],
        [k('kSecAttrApplicationTag'), tagData],
        [k('kSecAttrAccessControl'), access],
      ]);
      const params = dictionary([
        [k('kSecAttrKeyType'), k('kSecAttrKeyTypeECSECPrimeRandom')],
        [k('kSecAttrKeySizeInBits'), bits],
        [k('kSecAttrTokenID'), k('kSecAttrTokenIDSecureEnclave')],
        [k('kSecUseDataProtectionKeychain'), kCFBooleanTrue],
        [k('kSecPrivateKeyAttrs'), privateAttrs],
      ]);
      try {
        const error: Ptr[] = [null];
        const key = SecKeyCreateRandomKey(params, error) as Ptr;
        if (!key) throw cfError('SecKeyCreateRandomKey', error[0] ?? null);
        return key;
      } finally {
        for (const ref of [params, privateAttrs, bits, access, tagData]) CFRelease(ref);
      }
    },
    publicKey(key) {
      const pub = SecKeyCopyPublicKey(key) as Ptr;
      if (!pub) throw new Error('SecKeyCopyPublicKey returned nothing');
      try {
        const error: Ptr[] = [null];
        const data = SecKeyCopyExternalRepresentation(pub, error) as Ptr;
        if (!data) throw cfError('SecKeyCopyExternalRepresentation', error[0] ?? null);
        try {
          return bytesOf(data);
        } finally {
          CFRelease(data);
        }
      } finally {
        CFRelease(pub);
      }
    },
    async sign(key, message) {
      const data = dataFrom(message);
      try {
        const error: Ptr[] = [null];
        const algorithm = k('kSecKeyAlgorithmECDSASignatureMessageX962SHA256');
        // Enclave signing takes milliseconds; run it off the event loop.
        const signature = await new Promise<Ptr>((resolve, reject) => {
          SecKeyCreateSignature.async(key, algorithm, data, error, (err: unknown, result: Ptr) =>
            err ? reject(err) : resolve(result),
          );
        });
        if (!signature) throw cfError('SecKeyCreateSignature', error[0] ?? null);
        try {
          return bytesOf(signature);
        } finally {
          CFRelease(signature);
        }
      } finally {
        CFRelease(data);
      }
    },
    release(key) {
      CFRelease(key);
    },
  };
  return macPlatform;
}
