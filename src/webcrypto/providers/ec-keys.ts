/** Key generation and import shared by ECDSA, ECDH and the Edwards-curve algorithms. */
import type { NamedCurve } from "../../pkcs11/curves.js";
import type { HsmKeyAlgorithm } from "../crypto-key.js";
import { dataError, notSupported } from "../dom-errors.js";
import { materialFromJwk, materialFromPkcs8 } from "../key-material.js";
import { nativeSubtle } from "../native.js";
import { generatePair, importMaterial, type ProviderContext } from "./context.js";
import { bytes } from "../../pkcs11/operations.js";

export interface EcUsages {
  privateKey: KeyUsage[];
  publicKey: KeyUsage[];
}

/** Algorithm shape: `{name, namedCurve}` for ECDSA/ECDH, `{name}` for Ed25519/Ed448. */
export function ecAlgorithm(name: string, curve: NamedCurve): HsmKeyAlgorithm {
  return name === "ECDSA" || name === "ECDH" ? { name, namedCurve: curve } : { name };
}

export function curveOf(name: string, namedCurve: string | undefined): NamedCurve {
  if (name === "Ed25519" || name === "Ed448") return name;
  if (namedCurve === "P-256" || namedCurve === "P-384" || namedCurve === "P-521") return namedCurve;
  if (namedCurve === "K-256") return "secp256k1";
  throw notSupported(`Curve '${namedCurve}' is not supported`);
}

export function generateEc(context: ProviderContext, algorithm: { name: string; namedCurve?: string }, usages: KeyUsage[], allowed: EcUsages): Promise<CryptoKeyPair> {
  const curve = curveOf(algorithm.name, algorithm.namedCurve);
  const kind = curve === "Ed25519" || curve === "Ed448" ? ("OKP" as const) : ("EC" as const);
  return generatePair(context, { kind, curve }, ecAlgorithm(algorithm.name, curve), usages, allowed.privateKey, allowed.publicKey);
}

export async function importEc(
  context: ProviderContext,
  format: KeyFormat,
  keyData: JsonWebKey | BufferSource,
  algorithm: { name: string; namedCurve?: string },
  extractable: boolean,
  usages: KeyUsage[],
  allowed: EcUsages,
): Promise<CryptoKey> {
  const isPrivate = format === "pkcs8" || (format === "jwk" && typeof (keyData as JsonWebKey).d === "string");
  if (!isPrivate) return nativeSubtle.importKey(format as "jwk", keyData as JsonWebKey, algorithm as EcKeyImportParams, extractable, usages);
  const material = format === "jwk" ? materialFromJwk(keyData as JsonWebKey) : materialFromPkcs8(bytes(keyData as BufferSource));
  if (material.kind !== "EC" && material.kind !== "OKP") throw dataError("Key data is not an elliptic-curve private key");
  const curve = curveOf(algorithm.name, algorithm.namedCurve);
  if (material.curve !== curve) throw dataError(`Key is on ${material.curve}, algorithm asks for ${curve}`);
  return importMaterial(context, material, ecAlgorithm(algorithm.name, curve), usages, allowed.privateKey);
}
