/** Key generation, import and algorithm shape shared by the three RSA algorithms. */
import type { TokenKey } from "../../pkcs11/token-key.js";
import { isHsmCryptoKey, type HsmCryptoKey, type HsmKeyAlgorithm } from "../crypto-key.js";
import { dataError, invalidAccess } from "../dom-errors.js";
import { materialFromJwk, materialFromPkcs8 } from "../key-material.js";
import { nativeSubtle } from "../native.js";
import { generatePair, hashName, importMaterial, type ProviderContext } from "./context.js";
import { bytes } from "../../pkcs11/operations.js";

export function rsaAlgorithm(name: string, key: TokenKey, hash: unknown): HsmKeyAlgorithm {
  return {
    name,
    modulusLength: key.info.modulusBits!,
    publicExponent: new Uint8Array(key.info.publicExponent!),
    hash: { name: hashName(hash) },
  };
}

export interface RsaUsages {
  privateKey: KeyUsage[];
  publicKey: KeyUsage[];
}

export async function generateRsa(
  context: ProviderContext,
  algorithm: RsaHashedKeyGenParams,
  usages: KeyUsage[],
  allowed: RsaUsages,
): Promise<CryptoKeyPair> {
  const shape: HsmKeyAlgorithm = {
    name: algorithm.name,
    modulusLength: algorithm.modulusLength,
    publicExponent: new Uint8Array(algorithm.publicExponent),
    hash: { name: hashName(algorithm.hash) },
  };
  const spec = { kind: "RSA" as const, modulusBits: algorithm.modulusLength, publicExponent: algorithm.publicExponent };
  return generatePair(context, spec, shape, usages, allowed.privateKey, allowed.publicKey);
}

export async function importRsa(
  context: ProviderContext,
  format: KeyFormat,
  keyData: JsonWebKey | BufferSource,
  algorithm: RsaHashedImportParams,
  extractable: boolean,
  usages: KeyUsage[],
  allowed: RsaUsages,
): Promise<CryptoKey> {
  const isPrivate = format === "pkcs8" || (format === "jwk" && typeof (keyData as JsonWebKey).d === "string");
  if (!isPrivate) return nativeSubtle.importKey(format as "jwk", keyData as JsonWebKey, algorithm, extractable, usages);
  const material = format === "jwk" ? materialFromJwk(keyData as JsonWebKey) : materialFromPkcs8(bytes(keyData as BufferSource));
  if (material.kind !== "RSA") throw dataError("Key data is not an RSA private key");
  const modulusBits = Buffer.from(material.n).toString("hex").replace(/^0+/, "").length * 4;
  const shape: HsmKeyAlgorithm = {
    name: algorithm.name,
    modulusLength: Math.ceil(modulusBits / 8) * 8,
    publicExponent: material.e,
    hash: { name: hashName(algorithm.hash) },
  };
  return importMaterial(context, material, shape, usages, allowed.privateKey);
}

/** Export: public keys are native and never reach here; token keys are never extractable. */
export function refuseExport(key: CryptoKey): never {
  if (isHsmCryptoKey(key)) throw invalidAccess("Keys held in the token are not extractable");
  throw invalidAccess("key is not extractable");
}

export type { HsmCryptoKey };
