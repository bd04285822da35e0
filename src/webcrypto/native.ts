/**
 * Node's own WebCrypto, captured when hsmkey is first imported: before the shim can replace the
 * methods of the global `crypto.subtle`, so routing to "native" never loops back into the shim.
 */
import { webcrypto } from "node:crypto";

const subtle = webcrypto.subtle;
const proto = Object.getPrototypeOf(subtle) as SubtleCrypto;

function bind<K extends keyof SubtleCrypto>(name: K): SubtleCrypto[K] {
  return (proto[name] as (...args: unknown[]) => unknown).bind(subtle) as SubtleCrypto[K];
}

/** The native SubtleCrypto methods, bound to Node's instance. */
export const nativeSubtle: SubtleCrypto = {
  decrypt: bind("decrypt"),
  deriveBits: bind("deriveBits"),
  deriveKey: bind("deriveKey"),
  digest: bind("digest"),
  encrypt: bind("encrypt"),
  exportKey: bind("exportKey"),
  generateKey: bind("generateKey"),
  importKey: bind("importKey"),
  sign: bind("sign"),
  unwrapKey: bind("unwrapKey"),
  verify: bind("verify"),
  wrapKey: bind("wrapKey"),
} as SubtleCrypto;

export const nativeCrypto: Crypto = webcrypto as unknown as Crypto;

/** The global CryptoKey class (Node's), whose prototype HSM-backed keys inherit. */
export const NativeCryptoKey: { prototype: CryptoKey } = (globalThis as unknown as { CryptoKey: { prototype: CryptoKey } }).CryptoKey ?? webcrypto.CryptoKey;

export function isNativeCryptoKey(value: unknown): value is CryptoKey {
  try {
    return value instanceof (NativeCryptoKey as unknown as new () => CryptoKey) && Object.getPrototypeOf(value) === NativeCryptoKey.prototype;
  } catch {
    return false;
  }
}
