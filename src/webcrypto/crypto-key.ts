/**
 * CryptoKeys backed by a token object.
 *
 * An HsmCryptoKey is a real `CryptoKey` as far as libraries can tell: `instanceof CryptoKey` holds
 * (its prototype chain runs through Node's CryptoKey.prototype), `Symbol.toStringTag` is
 * "CryptoKey", and `algorithm`/`usages`/`type`/`extractable` are own, spec-shaped, frozen values.
 * It is never extractable. The token object behind it is held in a WeakMap, out of reach of
 * `util.inspect`, JSON and property enumeration.
 */
import { inspect } from "node:util";
import type { TokenKey } from "../pkcs11/token-key.js";
import { NativeCryptoKey } from "./native.js";

const backing = new WeakMap<object, TokenKey>();

export type HsmKeyAlgorithm = KeyAlgorithm & Record<string, unknown>;

export interface HsmCryptoKey extends CryptoKey {
  readonly algorithm: HsmKeyAlgorithm;
}

interface KeyFields {
  type: KeyType;
  algorithm: HsmKeyAlgorithm;
  usages: KeyUsage[];
}

function HsmCryptoKeyImpl(this: object, fields: KeyFields): void {
  Object.defineProperties(this, {
    type: { value: fields.type, enumerable: true },
    extractable: { value: false, enumerable: true },
    algorithm: { value: deepFreeze(fields.algorithm), enumerable: true },
    usages: { value: Object.freeze([...fields.usages]), enumerable: true },
  });
}

const prototype = Object.create(NativeCryptoKey.prototype, {
  constructor: { value: HsmCryptoKeyImpl, writable: true, configurable: true },
  // Own accessors shadow Node's, which would throw on an object Node did not create.
  [inspect.custom]: {
    value(this: HsmCryptoKey) {
      const token = backing.get(this);
      const where = token ? ` ${token.describe()}` : "";
      return `CryptoKey [HSM${where}] ${inspect({ type: this.type, extractable: false, algorithm: this.algorithm, usages: this.usages })}`;
    },
  },
  toJSON: {
    value(this: HsmCryptoKey) {
      return { type: this.type, extractable: false, algorithm: this.algorithm, usages: this.usages };
    },
  },
});
for (const name of ["type", "extractable", "algorithm", "usages"]) {
  // Placeholders so reads on the prototype itself don't reach Node's throwing getters.
  Object.defineProperty(prototype, name, { value: undefined, writable: false, configurable: true });
}
HsmCryptoKeyImpl.prototype = prototype;

export function createHsmCryptoKey(tokenKey: TokenKey, fields: KeyFields): HsmCryptoKey {
  const key = Object.create(prototype) as HsmCryptoKey;
  HsmCryptoKeyImpl.call(key, fields);
  backing.set(key, tokenKey);
  return key;
}

export function isHsmCryptoKey(value: unknown): value is HsmCryptoKey {
  return typeof value === "object" && value !== null && backing.has(value);
}

/** The token object behind an HSM-backed CryptoKey. */
export function tokenKeyOf(key: CryptoKey): TokenKey {
  const tokenKey = backing.get(key);
  if (!tokenKey) throw new TypeError("Not an HSM-backed CryptoKey");
  return tokenKey;
}

function deepFreeze<T extends object>(value: T): T {
  for (const v of Object.values(value)) if (v && typeof v === "object" && !ArrayBuffer.isView(v)) deepFreeze(v as object);
  return Object.freeze(value);
}
