/**
 * RSA-OAEP decryption in the token (CKM_RSA_PKCS_OAEP). Which hashes and labels work depends on
 * the token (SoftHSM 2.6: SHA-1 and no label only); anything the token refuses at C_DecryptInit is
 * a NotSupportedError naming the token. There is no software fallback: OAEP padding is never
 * removed outside the token.
 */
import * as core from "webcrypto-core";
import { UnsupportedAlgorithmError } from "../../errors.js";
import { ckrOf } from "../../pkcs11/ckr.js";
import { CKM, CKZ_DATA_SPECIFIED, HASH_MECHANISM, HASH_MGF, PARAMS } from "../../pkcs11/constants.js";
import { OAEP_PARAMS_REFUSED } from "../../pkcs11/oaep-hashes.js";
import { bytes, decrypt } from "../../pkcs11/operations.js";
import { generateRsa, importRsa, refuseExport } from "./rsa-keys.js";
import { hashName, requireMechanism, tokenKey, type ProviderContext } from "./context.js";
import { invalidAccess } from "../dom-errors.js";

export const OAEP_USAGES = { privateKey: ["decrypt", "unwrapKey"] as KeyUsage[], publicKey: ["encrypt", "wrapKey"] as KeyUsage[] };


export class HsmRsaOaepProvider extends core.RsaOaepProvider {
  constructor(private readonly context: ProviderContext) {
    super();
  }

  override async onEncrypt(): Promise<ArrayBuffer> {
    throw invalidAccess("RSA-OAEP encryption uses the public key, which is an ordinary CryptoKey");
  }

  override async onDecrypt(algorithm: RsaOaepParams, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    requireMechanism(tk, CKM.RSA_PKCS_OAEP, "RSA-OAEP");
    const hash = hashName((key.algorithm as RsaHashedKeyAlgorithm).hash);
    const label = algorithm.label ? bytes(algorithm.label) : undefined;
    const parameter = {
      type: PARAMS.RSA_OAEP,
      hashAlg: HASH_MECHANISM[hash],
      mgf: HASH_MGF[hash],
      source: CKZ_DATA_SPECIFIED,
      ...(label && label.length > 0 ? { sourceData: label } : {}),
    };
    try {
      const out = await decrypt(tk, { mechanism: CKM.RSA_PKCS_OAEP, parameter }, bytes(data), tk.info.modulus!.length, true);
      return new Uint8Array(out).buffer;
    } catch (error) {
      const ckr = ckrOf((error as { cause?: unknown }).cause) ?? (error as { ckr?: string }).ckr;
      if (ckr && OAEP_PARAMS_REFUSED.has(ckr)) {
        const what = `RSA-OAEP with ${hash}${label?.length ? " and a label" : ""}`;
        throw new UnsupportedAlgorithmError(`${tk.token.describe()} refuses CKM_RSA_PKCS_OAEP for ${what} (${ckr})`, { ckr, cause: error });
      }
      throw error;
    }
  }

  override onGenerateKey(algorithm: RsaHashedKeyGenParams, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKeyPair> {
    return generateRsa(this.context, algorithm, usages, OAEP_USAGES);
  }

  override onImportKey(format: KeyFormat, keyData: JsonWebKey | ArrayBuffer, algorithm: RsaHashedImportParams, extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    return importRsa(this.context, format, keyData, algorithm, extractable, usages, OAEP_USAGES);
  }

  override async onExportKey(_format: KeyFormat, key: CryptoKey): Promise<never> {
    refuseExport(key);
  }
}
