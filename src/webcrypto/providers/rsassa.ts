/** RSASSA-PKCS1-v1_5 signing in the token (CKM_SHA*_RSA_PKCS, or CKM_RSA_PKCS over a DigestInfo). */
import * as core from "webcrypto-core";
import { CKM } from "../../pkcs11/constants.js";
import { bytes, sign, verify } from "../../pkcs11/operations.js";
import type { TokenKey } from "../../pkcs11/token-key.js";
import { generateRsa, importRsa, refuseExport } from "./rsa-keys.js";
import { digestOf, hashName, requireMechanism, tokenKey, type ProviderContext } from "./context.js";

const HASHED = { "SHA-1": 0x6, "SHA-256": CKM.SHA256_RSA_PKCS, "SHA-384": CKM.SHA384_RSA_PKCS, "SHA-512": CKM.SHA512_RSA_PKCS } as const;

/** DER prefixes of DigestInfo for each hash (RFC 8017, section 9.2, note 1). */
const DIGEST_INFO = {
  "SHA-1": "3021300906052b0e03021a05000414",
  "SHA-256": "3031300d060960864801650304020105000420",
  "SHA-384": "3041300d060960864801650304020205000430",
  "SHA-512": "3051300d060960864801650304020305000440",
} as const;

export const RSASSA_USAGES = { privateKey: ["sign"] as KeyUsage[], publicKey: ["verify"] as KeyUsage[] };

function mechanismFor(key: TokenKey, hashAlg: unknown, data: Buffer): { mechanism: number; input: Buffer } {
  const hash = hashName(hashAlg);
  if (key.token.has(HASHED[hash])) return { mechanism: HASHED[hash], input: data };
  requireMechanism(key, CKM.RSA_PKCS, `RSASSA-PKCS1-v1_5 with ${hash}`);
  const digest = digestOf(hash, data);
  return { mechanism: CKM.RSA_PKCS, input: Buffer.concat([Buffer.from(DIGEST_INFO[hash], "hex"), digest]) };
}

export class HsmRsaSsaProvider extends core.RsaSsaProvider {
  constructor(private readonly context: ProviderContext) {
    super();
  }

  override async onSign(_algorithm: RsaPssParams, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    const { mechanism, input } = mechanismFor(tk, (key.algorithm as RsaHashedKeyAlgorithm).hash, bytes(data));
    const out = await sign(tk, { mechanism }, input, tk.info.modulus!.length, true);
    return new Uint8Array(out).buffer;
  }

  override async onVerify(_algorithm: Algorithm, key: CryptoKey, signature: ArrayBuffer, data: ArrayBuffer): Promise<boolean> {
    const tk = tokenKey(key);
    const { mechanism, input } = mechanismFor(tk, (key.algorithm as RsaHashedKeyAlgorithm).hash, bytes(data));
    return verify(tk, { mechanism }, input, bytes(signature));
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
