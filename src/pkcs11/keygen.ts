/**
 * Creating keys on a token: generation and import of key material.
 *
 * Private and secret keys are always created CKA_SENSITIVE=true, CKA_EXTRACTABLE=false: once on
 * the token, their material cannot be read back. Persistent keys (CKA_TOKEN=true) are made on a
 * pooled session; session keys on the token's anchor session, so they live until the Hsm closes.
 */
import type * as pkcs11 from "pkcs11js";
import { tokenError } from "./ckr.js";
import { CKA, CKK, CKM, CKO, mechanismName } from "./constants.js";
import { curveParams, wrapPoint, type NamedCurve } from "./curves.js";
import type { Template } from "./attributes.js";
import { TokenKey } from "./token-key.js";
import type { Token } from "./token.js";

export type KeySpec =
  | { kind: "RSA"; modulusBits: number; publicExponent?: Uint8Array }
  | { kind: "EC" | "OKP"; curve: NamedCurve }
  | { kind: "AES" | "HMAC"; length: number };

export interface KeyCapabilities {
  sign?: boolean;
  decrypt?: boolean;
  unwrap?: boolean;
  derive?: boolean;
  /** Secret keys only. */
  encrypt?: boolean;
  wrap?: boolean;
  verify?: boolean;
}

export interface CreateOptions {
  label?: string;
  id?: Uint8Array;
  /** true: a token object that survives the session; false: a session object. */
  persistent: boolean;
  capabilities: KeyCapabilities;
}

export interface KeyPair {
  privateKey: TokenKey;
  publicKey: TokenKey;
}

function identity(options: CreateOptions): Template {
  const t: Template = [{ type: CKA.TOKEN, value: options.persistent }];
  if (options.label !== undefined) t.push({ type: CKA.LABEL, value: options.label });
  if (options.id !== undefined) t.push({ type: CKA.ID, value: Buffer.from(options.id) });
  return t;
}

const protectedKey: Template = [
  { type: CKA.PRIVATE, value: true },
  { type: CKA.SENSITIVE, value: true },
  { type: CKA.EXTRACTABLE, value: false },
];

function publicTemplate(spec: KeySpec, caps: KeyCapabilities): Template {
  if (spec.kind === "RSA") {
    return [
      { type: CKA.KEY_TYPE, value: CKK.RSA },
      { type: CKA.MODULUS_BITS, value: spec.modulusBits },
      { type: CKA.PUBLIC_EXPONENT, value: Buffer.from(spec.publicExponent ?? [1, 0, 1]) },
      { type: CKA.VERIFY, value: !!caps.sign },
      { type: CKA.ENCRYPT, value: !!caps.decrypt },
      { type: CKA.WRAP, value: !!caps.unwrap },
    ];
  }
  if (spec.kind === "EC" || spec.kind === "OKP") {
    return [
      { type: CKA.KEY_TYPE, value: spec.kind === "OKP" ? CKK.EC_EDWARDS : CKK.EC },
      { type: CKA.EC_PARAMS, value: curveParams(spec.curve) },
      { type: CKA.VERIFY, value: !!caps.sign },
    ];
  }
  throw new TypeError(`${spec.kind} keys have no public half`);
}

function privateTemplate(spec: KeySpec, caps: KeyCapabilities): Template {
  const t: Template = [{ type: CKA.SIGN, value: !!caps.sign }];
  if (spec.kind === "RSA") {
    t.push({ type: CKA.KEY_TYPE, value: CKK.RSA }, { type: CKA.DECRYPT, value: !!caps.decrypt }, { type: CKA.UNWRAP, value: !!caps.unwrap });
  } else if (spec.kind === "EC") {
    t.push({ type: CKA.KEY_TYPE, value: CKK.EC }, { type: CKA.DERIVE, value: !!caps.derive });
  } else if (spec.kind === "OKP") {
    t.push({ type: CKA.KEY_TYPE, value: CKK.EC_EDWARDS });
  }
  return [...t, ...protectedKey];
}

function secretTemplate(spec: KeySpec & { kind: "AES" | "HMAC" }, caps: KeyCapabilities): Template {
  return [
    { type: CKA.CLASS, value: CKO.SECRET_KEY },
    { type: CKA.KEY_TYPE, value: spec.kind === "AES" ? CKK.AES : CKK.GENERIC_SECRET },
    { type: CKA.SIGN, value: !!caps.sign },
    { type: CKA.VERIFY, value: !!caps.verify },
    { type: CKA.ENCRYPT, value: !!caps.encrypt },
    { type: CKA.DECRYPT, value: !!caps.decrypt },
    { type: CKA.WRAP, value: !!caps.wrap },
    { type: CKA.UNWRAP, value: !!caps.unwrap },
    ...protectedKey,
  ];
}

function onSession<T>(token: Token, persistent: boolean, fn: (session: pkcs11.Handle) => T | Promise<T>): Promise<T> {
  return persistent ? token.withSession(fn) : token.withAnchor(fn);
}

export async function generateKeyPair(token: Token, spec: KeySpec, options: CreateOptions): Promise<KeyPair> {
  const mechanism =
    spec.kind === "RSA" ? CKM.RSA_PKCS_KEY_PAIR_GEN : spec.kind === "EC" ? CKM.EC_KEY_PAIR_GEN : CKM.EC_EDWARDS_KEY_PAIR_GEN;
  token.requireMechanism(mechanism, `${describeSpec(spec)} key generation`);
  const pub: Template = [{ type: CKA.CLASS, value: CKO.PUBLIC_KEY }, ...identity(options), { type: CKA.PRIVATE, value: false }, ...publicTemplate(spec, options.capabilities)];
  const priv: Template = [{ type: CKA.CLASS, value: CKO.PRIVATE_KEY }, ...identity(options), ...privateTemplate(spec, options.capabilities)];
  try {
    return await onSession(token, options.persistent, async (session) => {
      const pair = await token.lib.C_GenerateKeyPairAsync(session, { mechanism }, pub, priv);
      try {
        return { privateKey: TokenKey.read(token, session, pair.privateKey), publicKey: TokenKey.read(token, session, pair.publicKey) };
      } catch (error) {
        destroyQuietly(token, session, pair.privateKey, pair.publicKey);
        throw error;
      }
    });
  } catch (error) {
    throw tokenError(error, `Generating a ${describeSpec(spec)} key pair (${mechanismName(mechanism)}) on ${token.describe()}`);
  }
}

export async function generateSecretKey(token: Token, spec: KeySpec & { kind: "AES" | "HMAC" }, options: CreateOptions): Promise<TokenKey> {
  const mechanism = spec.kind === "AES" ? CKM.AES_KEY_GEN : CKM.GENERIC_SECRET_KEY_GEN;
  token.requireMechanism(mechanism, `${describeSpec(spec)} key generation`);
  const template = [...identity(options), ...secretTemplate(spec, options.capabilities), { type: CKA.VALUE_LEN, value: spec.length }];
  try {
    return await onSession(token, options.persistent, (session) => {
      const handle = token.lib.C_GenerateKey(session, { mechanism }, template);
      return readOrDestroy(token, session, handle);
    });
  } catch (error) {
    throw tokenError(error, `Generating a ${describeSpec(spec)} key (${mechanismName(mechanism)}) on ${token.describe()}`);
  }
}

/** Private key material to import, as big-endian unsigned integers / raw bytes. */
export type KeyMaterial =
  | {
      kind: "RSA";
      n: Uint8Array; e: Uint8Array; d: Uint8Array; p: Uint8Array; q: Uint8Array; dp: Uint8Array; dq: Uint8Array; qi: Uint8Array;
    }
  | { kind: "EC" | "OKP"; curve: NamedCurve; d: Uint8Array; point: Uint8Array }
  | { kind: "AES" | "HMAC"; value: Uint8Array };

export interface ImportedKey {
  privateKey?: TokenKey;
  publicKey?: TokenKey;
  secretKey?: TokenKey;
}

/** Create objects holding the given material: private + public for key pairs, one secret otherwise. */
export async function importKeyMaterial(token: Token, material: KeyMaterial, options: CreateOptions): Promise<ImportedKey> {
  const caps = options.capabilities;
  try {
    return await onSession(token, options.persistent, (session) => {
      const lib = token.lib;
      if (material.kind === "AES" || material.kind === "HMAC") {
        const template = [...identity(options), ...secretTemplate({ kind: material.kind, length: material.value.length }, caps), { type: CKA.VALUE, value: Buffer.from(material.value) }];
        return { secretKey: readOrDestroy(token, session, lib.C_CreateObject(session, template)) };
      }
      const spec: KeySpec = material.kind === "RSA" ? { kind: "RSA", modulusBits: 0 } : { kind: material.kind, curve: (material as { curve: NamedCurve }).curve };
      const priv: Template = [{ type: CKA.CLASS, value: CKO.PRIVATE_KEY }, ...identity(options), ...privateTemplate(spec, caps)];
      const pub: Template = [{ type: CKA.CLASS, value: CKO.PUBLIC_KEY }, ...identity(options), { type: CKA.PRIVATE, value: false }];
      if (material.kind === "RSA") {
        const b = (v: Uint8Array) => Buffer.from(v);
        priv.push(
          { type: CKA.MODULUS, value: b(material.n) }, { type: CKA.PUBLIC_EXPONENT, value: b(material.e) },
          { type: CKA.PRIVATE_EXPONENT, value: b(material.d) }, { type: CKA.PRIME_1, value: b(material.p) },
          { type: CKA.PRIME_2, value: b(material.q) }, { type: CKA.EXPONENT_1, value: b(material.dp) },
          { type: CKA.EXPONENT_2, value: b(material.dq) }, { type: CKA.COEFFICIENT, value: b(material.qi) },
        );
        pub.push(
          { type: CKA.KEY_TYPE, value: CKK.RSA }, { type: CKA.MODULUS, value: b(material.n) }, { type: CKA.PUBLIC_EXPONENT, value: b(material.e) },
          { type: CKA.VERIFY, value: !!caps.sign }, { type: CKA.ENCRYPT, value: !!caps.decrypt }, { type: CKA.WRAP, value: !!caps.unwrap },
        );
      } else if (material.kind === "EC" || material.kind === "OKP") {
        priv.push({ type: CKA.EC_PARAMS, value: curveParams(material.curve) }, { type: CKA.VALUE, value: Buffer.from(material.d) });
        pub.push(
          { type: CKA.KEY_TYPE, value: material.kind === "OKP" ? CKK.EC_EDWARDS : CKK.EC },
          { type: CKA.EC_PARAMS, value: curveParams(material.curve) },
          { type: CKA.EC_POINT, value: wrapPoint(material.point) },
          { type: CKA.VERIFY, value: !!caps.sign },
        );
      }
      const privateHandle = lib.C_CreateObject(session, priv);
      let publicHandle: pkcs11.Handle | undefined;
      try {
        publicHandle = lib.C_CreateObject(session, pub);
        return { privateKey: TokenKey.read(token, session, privateHandle), publicKey: TokenKey.read(token, session, publicHandle) };
      } catch (error) {
        destroyQuietly(token, session, privateHandle, publicHandle);
        throw error;
      }
    });
  } catch (error) {
    throw tokenError(error, `Importing a ${material.kind} key into ${token.describe()}`);
  }
}

/** Destroy key objects (e.g. a key pair just made). */
export function destroyObjects(token: Token, keys: TokenKey[]): Promise<void> {
  return token.withSession((session) => {
    for (const k of keys) token.lib.C_DestroyObject(session, k.handle(session));
  });
}

function readOrDestroy(token: Token, session: pkcs11.Handle, handle: pkcs11.Handle): TokenKey {
  try {
    return TokenKey.read(token, session, handle);
  } catch (error) {
    destroyQuietly(token, session, handle);
    throw error;
  }
}

function destroyQuietly(token: Token, session: pkcs11.Handle, ...handles: (pkcs11.Handle | undefined)[]): void {
  for (const h of handles) {
    if (!h) continue;
    try {
      token.lib.C_DestroyObject(session, h);
    } catch {
      // best effort: the object may not exist
    }
  }
}

function describeSpec(spec: KeySpec): string {
  if (spec.kind === "RSA") return `RSA-${spec.modulusBits}`;
  if ("curve" in spec) return spec.curve;
  return `${spec.kind}-${spec.length * 8}`;
}
