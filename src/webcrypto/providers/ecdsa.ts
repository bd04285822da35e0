/**
 * ECDSA signing in the token. With CKM_ECDSA_SHA* the token hashes; otherwise (SoftHSM) the
 * message is hashed here and the token signs the digest with raw CKM_ECDSA. Either way the token
 * returns r||s, the encoding WebCrypto and JOSE use.
 */
import * as core from "webcrypto-core";
import { CKM } from "../../pkcs11/constants.js";
import { CURVES } from "../../pkcs11/curves.js";
import { bytes, sign, verify } from "../../pkcs11/operations.js";
import type { TokenKey } from "../../pkcs11/token-key.js";
import { generateEc, importEc } from "./ec-keys.js";
import { digestOf, hashName, requireMechanism, tokenKey, type ProviderContext } from "./context.js";
import { refuseExport } from "./rsa-keys.js";

const HASHED = { "SHA-1": 0x1042, "SHA-256": CKM.ECDSA_SHA256, "SHA-384": CKM.ECDSA_SHA384, "SHA-512": CKM.ECDSA_SHA512 } as const;
const USAGES = { privateKey: ["sign"] as KeyUsage[], publicKey: ["verify"] as KeyUsage[] };

function prepare(key: TokenKey, hashAlg: unknown, data: Buffer): { mechanism: number; input: Buffer } {
  const hash = hashName(hashAlg);
  if (key.token.has(HASHED[hash])) return { mechanism: HASHED[hash], input: data };
  requireMechanism(key, CKM.ECDSA, `ECDSA with ${hash}`);
  return { mechanism: CKM.ECDSA, input: digestOf(hash, data) };
}

export class HsmEcdsaProvider extends core.EcdsaProvider {
  constructor(private readonly context: ProviderContext) {
    super();
  }

  override async onSign(algorithm: EcdsaParams, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    const { mechanism, input } = prepare(tk, algorithm.hash, bytes(data));
    const out = await sign(tk, { mechanism }, input, 2 * CURVES[tk.info.curve!].size, false);
    return new Uint8Array(out).buffer;
  }

  override async onVerify(algorithm: EcdsaParams, key: CryptoKey, signature: ArrayBuffer, data: ArrayBuffer): Promise<boolean> {
    const tk = tokenKey(key);
    const { mechanism, input } = prepare(tk, algorithm.hash, bytes(data));
    return verify(tk, { mechanism }, input, bytes(signature));
  }

  override onGenerateKey(algorithm: EcKeyGenParams, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKeyPair> {
    return generateEc(this.context, algorithm, usages, USAGES);
  }

  override onImportKey(format: KeyFormat, keyData: JsonWebKey | ArrayBuffer, algorithm: EcKeyImportParams, extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    return importEc(this.context, format, keyData, algorithm, extractable, usages, USAGES);
  }

  override async onExportKey(_format: KeyFormat, key: CryptoKey): Promise<never> {
    refuseExport(key);
  }
}
