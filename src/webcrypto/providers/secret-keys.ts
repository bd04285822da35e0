/** Generation and import of secret (AES, HMAC) keys as token session objects. */
import { generateSecretKey } from "../../pkcs11/keygen.js";
import type { HsmCryptoKey, HsmKeyAlgorithm } from "../crypto-key.js";
import { dataError } from "../dom-errors.js";
import { materialFromJwk } from "../key-material.js";
import { capabilitiesFor, cryptoKeyFor, importMaterial, requireToken, type ProviderContext } from "./context.js";
import { bytes } from "../../pkcs11/operations.js";

export async function generateSecret(
  context: ProviderContext,
  kind: "AES" | "HMAC",
  lengthBytes: number,
  algorithm: HsmKeyAlgorithm,
  usages: KeyUsage[],
  allowed: readonly KeyUsage[],
): Promise<HsmCryptoKey> {
  const token = requireToken(context, "generateKey");
  const key = await generateSecretKey(token, { kind, length: lengthBytes }, { persistent: false, capabilities: capabilitiesFor(usages) });
  return cryptoKeyFor(key, algorithm, allowed.filter((u) => usages.includes(u)));
}

/** Raw bytes of a `raw` or `oct` JWK secret offered for import. */
export function secretBytes(format: KeyFormat, keyData: JsonWebKey | BufferSource): Uint8Array {
  if (format === "raw") return new Uint8Array(bytes(keyData as BufferSource));
  if (format === "jwk") {
    const material = materialFromJwk(keyData as JsonWebKey);
    if (material.kind !== "HMAC") throw dataError("JWK is not an 'oct' secret key");
    return material.value;
  }
  throw dataError(`Secret keys are imported as 'raw' or 'jwk', not '${format}'`);
}

export function importSecret(
  context: ProviderContext,
  kind: "AES" | "HMAC",
  value: Uint8Array,
  algorithm: HsmKeyAlgorithm,
  usages: KeyUsage[],
  allowed: readonly KeyUsage[],
): Promise<HsmCryptoKey> {
  return importMaterial(context, { kind, value }, algorithm, usages, allowed);
}
