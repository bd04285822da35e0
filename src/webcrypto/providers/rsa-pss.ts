/** RSA-PSS signing in the token (CKM_SHA*_RSA_PKCS_PSS, or CKM_RSA_PKCS_PSS over a digest). */
import * as core from "webcrypto-core";
import { CKM, HASH_MECHANISM, HASH_MGF, PARAMS } from "../../pkcs11/constants.js";
import { bytes, sign, verify, type Mechanism } from "../../pkcs11/operations.js";
import type { TokenKey } from "../../pkcs11/token-key.js";
import { generateRsa, importRsa, refuseExport } from "./rsa-keys.js";
import { digestOf, hashName, requireMechanism, tokenKey, type ProviderContext } from "./context.js";
import { RSASSA_USAGES } from "./rsassa.js";

const HASHED = { "SHA-1": 0xe, "SHA-256": CKM.SHA256_RSA_PKCS_PSS, "SHA-384": CKM.SHA384_RSA_PKCS_PSS, "SHA-512": CKM.SHA512_RSA_PKCS_PSS } as const;

function prepare(key: TokenKey, hashAlg: unknown, saltLength: number, data: Buffer): { mechanism: Mechanism; input: Buffer } {
  const hash = hashName(hashAlg);
  const parameter = { type: PARAMS.RSA_PSS, hashAlg: HASH_MECHANISM[hash], mgf: HASH_MGF[hash], saltLen: saltLength };
  if (key.token.has(HASHED[hash])) return { mechanism: { mechanism: HASHED[hash], parameter }, input: data };
  requireMechanism(key, CKM.RSA_PKCS_PSS, `RSA-PSS with ${hash}`);
  const digest = digestOf(hash, data);
  return { mechanism: { mechanism: CKM.RSA_PKCS_PSS, parameter }, input: digest };
}

export class HsmRsaPssProvider extends core.RsaPssProvider {
  constructor(private readonly context: ProviderContext) {
    super();
  }

  override async onSign(algorithm: RsaPssParams, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    const { mechanism, input } = prepare(tk, (key.algorithm as RsaHashedKeyAlgorithm).hash, algorithm.saltLength, bytes(data));
    return new Uint8Array(await sign(tk, mechanism, input, tk.info.modulus!.length, true)).buffer;
  }

  override async onVerify(algorithm: RsaPssParams, key: CryptoKey, signature: ArrayBuffer, data: ArrayBuffer): Promise<boolean> {
    const tk = tokenKey(key);
    const { mechanism, input } = prepare(tk, (key.algorithm as RsaHashedKeyAlgorithm).hash, algorithm.saltLength, bytes(data));
    return verify(tk, mechanism, input, bytes(signature));
  }

  override onGenerateKey(algorithm: RsaHashedKeyGenParams, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKeyPair> {
    return generateRsa(this.context, algorithm, usages, RSASSA_USAGES);
  }

  override onImportKey(format: KeyFormat, keyData: JsonWebKey | ArrayBuffer, algorithm: RsaHashedImportParams, extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    return importRsa(this.context, format, keyData, algorithm, extractable, usages, RSASSA_USAGES);
  }

  override async onExportKey(_format: KeyFormat, key: CryptoKey): Promise<never> {
    refuseExport(key);
  }
}
