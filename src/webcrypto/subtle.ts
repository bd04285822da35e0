/**
 * A SubtleCrypto whose operations on HSM-backed keys run in their token.
 *
 * Routing, the one rule of this file: a call that involves an HSM-backed key goes to the
 * webcrypto-core providers below (which run in that key's token); a call that involves only
 * ordinary keys goes to Node's native WebCrypto unchanged. With a `token`, generateKey, importKey
 * and unwrapKey of non-extractable private/secret keys create session keys in it; extractable keys
 * are software keys by definition (the caller asked to be able to read them) and are native, as
 * are all keys without a token (the global shim).
 */
import * as core from "webcrypto-core";
import type { Token } from "../pkcs11/token.js";
import { HASH_MECHANISM } from "../pkcs11/constants.js";
import { isHsmCryptoKey } from "./crypto-key.js";
import { invalidAccess, toWebCryptoError } from "./dom-errors.js";
import { nativeSubtle } from "./native.js";
import type { ProviderContext } from "./providers/context.js";
import { hashName } from "./providers/context.js";
import { HsmAesGcmProvider, HsmAesKwProvider } from "./providers/aes.js";
import { HsmEcdhProvider } from "./providers/ecdh.js";
import { HsmEcdsaProvider } from "./providers/ecdsa.js";
import { HsmEd25519Provider, HsmEd448Provider } from "./providers/eddsa.js";
import { HsmHmacProvider } from "./providers/hmac.js";
import { HsmRsaOaepProvider } from "./providers/rsa-oaep.js";
import { HsmRsaPssProvider } from "./providers/rsa-pss.js";
import { HsmRsaSsaProvider } from "./providers/rsassa.js";
import { digest as tokenDigest } from "./token-digest.js";

type Args = unknown[];

async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw toWebCryptoError(error);
  }
}

export class HsmSubtleCrypto extends core.SubtleCrypto {
  readonly #context: ProviderContext;

  constructor(token?: Token) {
    super();
    this.#context = token ? { token } : {};
    for (const Provider of [
      HsmRsaSsaProvider, HsmRsaPssProvider, HsmRsaOaepProvider, HsmEcdsaProvider, HsmEcdhProvider,
      HsmEd25519Provider, HsmEd448Provider, HsmHmacProvider, HsmAesGcmProvider, HsmAesKwProvider,
    ]) {
      this.providers.set(new Provider(this.#context));
    }
  }

  /** Any CryptoKey (HSM-backed or Node's) is acceptable where webcrypto-core wants its own class. */
  protected override checkCryptoKey(key: CryptoKey): asserts key is core.CryptoKey {
    if ((key as unknown as Record<symbol, unknown> | null)?.[Symbol.toStringTag] !== "CryptoKey") {
      throw new TypeError("Key is not of type 'CryptoKey'");
    }
  }

  override sign(...args: Args): Promise<ArrayBuffer> {
    if (!isHsmCryptoKey(args[1])) return (nativeSubtle.sign as (...a: Args) => Promise<ArrayBuffer>)(...args);
    return guard(() => super.sign(...(args as Parameters<core.SubtleCrypto["sign"]>)));
  }

  override verify(...args: Args): Promise<boolean> {
    if (!isHsmCryptoKey(args[1])) return (nativeSubtle.verify as (...a: Args) => Promise<boolean>)(...args);
    return guard(() => super.verify(...(args as Parameters<core.SubtleCrypto["verify"]>)));
  }

  override encrypt(...args: Args): Promise<ArrayBuffer> {
    if (!isHsmCryptoKey(args[1])) return (nativeSubtle.encrypt as (...a: Args) => Promise<ArrayBuffer>)(...args);
    return guard(() => super.encrypt(...(args as Parameters<core.SubtleCrypto["encrypt"]>)));
  }

  override decrypt(...args: Args): Promise<ArrayBuffer> {
    if (!isHsmCryptoKey(args[1])) return (nativeSubtle.decrypt as (...a: Args) => Promise<ArrayBuffer>)(...args);
    return guard(() => super.decrypt(...(args as Parameters<core.SubtleCrypto["decrypt"]>)));
  }

  override deriveBits(...args: Args): Promise<ArrayBuffer> {
    if (!isHsmCryptoKey(args[1])) return (nativeSubtle.deriveBits as (...a: Args) => Promise<ArrayBuffer>)(...args);
    return guard(() => super.deriveBits(...(args as Parameters<core.SubtleCrypto["deriveBits"]>)));
  }

  override deriveKey(...args: Args): Promise<CryptoKey> {
    const [algorithm, baseKey, derivedKeyType, extractable, usages] = args as [Algorithm, CryptoKey, AlgorithmIdentifier, boolean, KeyUsage[]];
    if (!isHsmCryptoKey(baseKey)) return (nativeSubtle.deriveKey as (...a: Args) => Promise<CryptoKey>)(...args);
    return guard(async () => {
      if (!baseKey.usages.includes("deriveKey")) throw invalidAccess("baseKey does not allow deriveKey");
      const length = derivedLength(derivedKeyType);
      const bits = await super.deriveBits({ ...algorithm } as never, baseKey as core.CryptoKey, length, { keyUsage: false } as never);
      return this.importKey("raw", bits, derivedKeyType, extractable, usages);
    });
  }

  override wrapKey(...args: Args): Promise<ArrayBuffer> {
    const [format, key, wrappingKey, wrapAlgorithm] = args as [KeyFormat, CryptoKey, CryptoKey, AlgorithmIdentifier];
    if (!isHsmCryptoKey(key) && !isHsmCryptoKey(wrappingKey)) return (nativeSubtle.wrapKey as (...a: Args) => Promise<ArrayBuffer>)(...args);
    return guard(async () => {
      if (isHsmCryptoKey(key)) throw invalidAccess("Keys held in the token are not extractable, so they cannot be wrapped");
      if (!wrappingKey.usages.includes("wrapKey")) throw invalidAccess("wrappingKey does not allow wrapKey");
      let data = await nativeSubtle.exportKey(format as "raw", key);
      if (format === "jwk") data = new TextEncoder().encode(JSON.stringify(data)).buffer;
      const prepared = this.prepareAlgorithm(wrapAlgorithm) as Algorithm;
      const provider = this.getProvider(prepared.name);
      return provider.encrypt({ ...prepared, name: provider.name }, wrappingKey as core.CryptoKey, data as ArrayBuffer, { keyUsage: false });
    });
  }

  override unwrapKey(...args: Args): Promise<CryptoKey> {
    const [format, wrappedKey, unwrappingKey, unwrapAlgorithm, unwrappedKeyAlgorithm, extractable, usages] = args as [
      KeyFormat, BufferSource, CryptoKey, AlgorithmIdentifier, AlgorithmIdentifier, boolean, KeyUsage[],
    ];
    if (!isHsmCryptoKey(unwrappingKey)) return (nativeSubtle.unwrapKey as (...a: Args) => Promise<CryptoKey>)(...args);
    return guard(async () => {
      if (!unwrappingKey.usages.includes("unwrapKey")) throw invalidAccess("unwrappingKey does not allow unwrapKey");
      const prepared = this.prepareAlgorithm(unwrapAlgorithm) as Algorithm;
      const provider = this.getProvider(prepared.name);
      const data = new Uint8Array(
        await provider.decrypt({ ...prepared, name: provider.name }, unwrappingKey as core.CryptoKey, toArrayBuffer(wrappedKey), { keyUsage: false }),
      );
      const keyData = format === "jwk" ? (JSON.parse(new TextDecoder().decode(data)) as JsonWebKey) : data;
      return this.importKey(format as "raw", keyData as Uint8Array, unwrappedKeyAlgorithm, extractable, usages);
    });
  }

  override exportKey(...args: Args): Promise<any> {
    if (isHsmCryptoKey(args[1])) return Promise.reject(invalidAccess("Keys held in the token are not extractable"));
    return (nativeSubtle.exportKey as (...a: Args) => Promise<ArrayBuffer | JsonWebKey>)(...args);
  }

  override generateKey(...args: Args): Promise<any> {
    if (!this.#context.token || args[1] === true) return (nativeSubtle.generateKey as (...a: Args) => Promise<CryptoKeyPair>)(...args);
    return guard(() => super.generateKey(...(args as Parameters<core.SubtleCrypto["generateKey"]>)) as Promise<CryptoKey | CryptoKeyPair>);
  }

  override importKey(...args: Args): Promise<CryptoKey> {
    const [format, keyData] = args as [KeyFormat, unknown];
    const isPublic = format === "spki" || (format === "jwk" && isPublicJwk(keyData));
    const isRawPublic = format === "raw" && isAsymmetric(args[2]);
    if (!this.#context.token || isPublic || isRawPublic || args[3] === true) return (nativeSubtle.importKey as (...a: Args) => Promise<CryptoKey>)(...args);
    return guard(() => super.importKey(...(args as Parameters<core.SubtleCrypto["importKey"]>)));
  }

  override digest(...args: Args): Promise<ArrayBuffer> {
    const token = this.#context.token;
    const [algorithm, data] = args as [AlgorithmIdentifier, BufferSource];
    if (!token) return (nativeSubtle.digest as (...a: Args) => Promise<ArrayBuffer>)(...args);
    return guard(async () => {
      const hash = hashName(algorithm);
      if (!token.has(HASH_MECHANISM[hash])) return nativeSubtle.digest(algorithm, data);
      return tokenDigest(token, HASH_MECHANISM[hash], data);
    });
  }
}

function isPublicJwk(value: unknown): boolean {
  const jwk = value as JsonWebKey | undefined;
  return !!jwk && jwk.kty !== "oct" && typeof jwk.d !== "string";
}

function isAsymmetric(algorithm: unknown): boolean {
  const name = typeof algorithm === "string" ? algorithm : (algorithm as { name?: string } | undefined)?.name;
  return ["ECDSA", "ECDH", "Ed25519", "Ed448", "X25519", "X448"].includes(name ?? "");
}

function derivedLength(algorithm: AlgorithmIdentifier): number {
  const alg = (typeof algorithm === "string" ? { name: algorithm } : algorithm) as { name: string; length?: number; hash?: unknown };
  if (typeof alg.length === "number") return alg.length;
  if (alg.name.toUpperCase() === "HMAC") return { "SHA-1": 512, "SHA-256": 512, "SHA-384": 1024, "SHA-512": 1024 }[hashName(alg.hash)];
  throw new TypeError(`derivedKeyType: give a length for ${alg.name}`);
}

function toArrayBuffer(data: BufferSource): ArrayBuffer {
  const view = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
  return view.slice().buffer;
}
