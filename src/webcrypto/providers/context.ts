/**
 * What every hsmkey provider shares: the token that new keys go to (absent for the global shim,
 * which never creates keys) and the helpers that turn token objects into CryptoKeys.
 */
import { UnsupportedAlgorithmError } from "../../errors.js";
import { generateKeyPair, importKeyMaterial, type KeyCapabilities, type KeyMaterial, type KeySpec } from "../../pkcs11/keygen.js";
import type { KeyFlags, TokenKey } from "../../pkcs11/token-key.js";
import type { Token } from "../../pkcs11/token.js";
import { createHsmCryptoKey, tokenKeyOf, type HsmCryptoKey, type HsmKeyAlgorithm } from "../crypto-key.js";
import { nativePublicKey, publicJwkOf } from "../public-key.js";
import * as nodeCrypto from "node:crypto";

export interface ProviderContext {
  /** Token on which generateKey/importKey create (session) keys. */
  token?: Token;
}

const USAGE_FLAG: Record<KeyUsage, keyof KeyFlags> = {
  sign: "sign",
  verify: "verify",
  encrypt: "encrypt",
  decrypt: "decrypt",
  wrapKey: "wrap",
  unwrapKey: "unwrap",
  deriveBits: "derive",
  deriveKey: "derive",
};

/** The usages among `allowed` that the object's CKA_* flags permit. */
export function usagesOf(key: TokenKey, allowed: readonly KeyUsage[]): KeyUsage[] {
  return allowed.filter((u) => key.info.flags[USAGE_FLAG[u]]);
}

/** A CryptoKey for a token object, shaped as `algorithm`, with the permitted usages among `allowed`. */
export function cryptoKeyFor(key: TokenKey, algorithm: HsmKeyAlgorithm, allowed: readonly KeyUsage[]): HsmCryptoKey {
  const type: KeyType = key.info.class === "secret" ? "secret" : key.info.class;
  return createHsmCryptoKey(key, { type, algorithm, usages: usagesOf(key, allowed) });
}

export function tokenKey(key: CryptoKey): TokenKey {
  return tokenKeyOf(key);
}

export function requireMechanism(key: TokenKey | Token, mechanism: number, purpose: string): void {
  ("token" in key ? key.token : key).requireMechanism(mechanism, purpose);
}

export function requireToken(context: ProviderContext, what: string): Token {
  if (!context.token) throw new UnsupportedAlgorithmError(`${what} needs a token: use hsm.crypto.subtle`);
  return context.token;
}

/** Capabilities of a new key derived from the usages asked for. */
export function capabilitiesFor(usages: readonly KeyUsage[]): KeyCapabilities {
  const has = (u: KeyUsage) => usages.includes(u);
  return {
    sign: has("sign"),
    verify: has("verify"),
    encrypt: has("encrypt"),
    decrypt: has("decrypt"),
    wrap: has("wrapKey"),
    unwrap: has("unwrapKey"),
    derive: has("deriveBits") || has("deriveKey"),
  };
}

/** A key pair as WebCrypto returns it: private in the token, public as a native CryptoKey. */
export async function pairFor(
  privateKey: TokenKey,
  publicInfo: TokenKey,
  algorithm: HsmKeyAlgorithm,
  usages: readonly KeyUsage[],
  privateAllowed: readonly KeyUsage[],
  publicAllowed: readonly KeyUsage[],
): Promise<CryptoKeyPair> {
  const priv = cryptoKeyFor(privateKey, algorithm, privateAllowed.filter((u) => usages.includes(u)));
  const pub = await nativePublicKey(publicJwkOf(publicInfo.info), algorithm, publicAllowed.filter((u) => usages.includes(u)));
  return { privateKey: priv, publicKey: pub };
}

/** Generate a session key pair on the context's token. */
export async function generatePair(
  context: ProviderContext,
  spec: KeySpec,
  algorithm: HsmKeyAlgorithm,
  usages: readonly KeyUsage[],
  privateAllowed: readonly KeyUsage[],
  publicAllowed: readonly KeyUsage[],
): Promise<CryptoKeyPair> {
  const token = requireToken(context, "generateKey");
  const pair = await generateKeyPair(token, spec, { persistent: false, capabilities: capabilitiesFor(usages) });
  return pairFor(pair.privateKey, pair.publicKey, algorithm, usages, privateAllowed, publicAllowed);
}

/** Import private or secret material as a session object; returns the private/secret CryptoKey. */
export async function importMaterial(
  context: ProviderContext,
  material: KeyMaterial,
  algorithm: HsmKeyAlgorithm,
  usages: readonly KeyUsage[],
  allowed: readonly KeyUsage[],
): Promise<HsmCryptoKey> {
  const token = requireToken(context, "importKey");
  const imported = await importKeyMaterial(token, material, { persistent: false, capabilities: capabilitiesFor(usages) });
  const key = imported.secretKey ?? imported.privateKey!;
  return cryptoKeyFor(key, algorithm, allowed.filter((u) => usages.includes(u)));
}

export function hashName(hash: unknown): "SHA-1" | "SHA-256" | "SHA-384" | "SHA-512" {
  const name = typeof hash === "string" ? hash : (hash as { name?: string } | undefined)?.name;
  const upper = (name ?? "").toUpperCase();
  if (upper === "SHA-1" || upper === "SHA-256" || upper === "SHA-384" || upper === "SHA-512") return upper;
  throw new UnsupportedAlgorithmError(`Hash '${name}' is not supported`);
}

const NODE_HASH = { "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" } as const;

/**
 * The message digest, computed here, for tokens that sign a digest (raw CKM_ECDSA,
 * CKM_RSA_PKCS[_PSS]). Node's one-shot `crypto.hash` (Node 20.12+) takes 0.8 µs for a JWT's signing
 * input where `createHash` takes 1.3 µs: a per-signature cost on the main thread.
 */
export const digestOf: (hash: HashName, data: Buffer) => Buffer = typeof nodeCrypto.hash === "function"
  ? (hash, data) => nodeCrypto.hash(NODE_HASH[hash], data, "buffer")
  : (hash, data) => nodeCrypto.createHash(NODE_HASH[hash]).update(data).digest();

export type HashName = ReturnType<typeof hashName>;

export const HASH_BYTES = { "SHA-1": 20, "SHA-256": 32, "SHA-384": 48, "SHA-512": 64 } as const;
