/**
 * The public half of a token key as ordinary WebCrypto material: a public JWK built from the
 * token's attributes, and a native (extractable) CryptoKey made from it. Public keys are not
 * secret; verifying and encrypting with them in software is what every relying party does anyway.
 */
import { KeyExportError } from "../errors.js";
import type { KeyInfo } from "../pkcs11/token-key.js";
import { CURVES } from "../pkcs11/curves.js";
import { nativeSubtle } from "./native.js";

export function b64u(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

/** RFC 7517 public JWK (kty and key parameters only) for an RSA, EC or OKP key. */
export function publicJwkOf(info: KeyInfo): JsonWebKey {
  if (info.kind === "RSA" && info.modulus && info.publicExponent) {
    return { kty: "RSA", n: b64u(info.modulus), e: b64u(info.publicExponent) };
  }
  if (info.kind === "EC" && info.curve && info.point) {
    const size = CURVES[info.curve].size;
    return { kty: "EC", crv: info.curve, x: b64u(info.point.subarray(1, 1 + size)), y: b64u(info.point.subarray(1 + size)) };
  }
  if (info.kind === "OKP" && info.curve && info.point) {
    return { kty: "OKP", crv: info.curve, x: b64u(info.point) };
  }
  throw new KeyExportError(`No public key material is available for this ${info.kind} ${info.class} key`);
}

/** A native, extractable public CryptoKey for `algorithm` with `usages` (e.g. ["verify"]). */
export function nativePublicKey(jwk: JsonWebKey, algorithm: KeyAlgorithm & Record<string, unknown>, usages: KeyUsage[]): Promise<CryptoKey> {
  const { name } = algorithm;
  const importAlgorithm =
    name === "ECDSA" || name === "ECDH"
      ? { name, namedCurve: algorithm.namedCurve }
      : name === "Ed25519" || name === "Ed448"
        ? { name }
        : { name, hash: algorithm.hash };
  return nativeSubtle.importKey("jwk", { ...jwk, ext: true }, importAlgorithm as AlgorithmIdentifier, true, usages);
}
