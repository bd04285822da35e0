/** Ed25519 and Ed448 signing in the token (CKM_EDDSA, PKCS#11 v3.0; pure EdDSA, no context). */
import * as core from "webcrypto-core";
import { CKM } from "../../pkcs11/constants.js";
import { bytes, sign, verify } from "../../pkcs11/operations.js";
import { generateEc, importEc } from "./ec-keys.js";
import { requireMechanism, tokenKey, type ProviderContext } from "./context.js";
import { refuseExport } from "./rsa-keys.js";

const USAGES = { privateKey: ["sign"] as KeyUsage[], publicKey: ["verify"] as KeyUsage[] };
const SIGNATURE_BYTES = { Ed25519: 64, Ed448: 114 } as const;

abstract class EdwardsProvider extends core.ProviderCrypto {
  abstract override name: "Ed25519" | "Ed448";
  override usages = USAGES;

  constructor(private readonly context: ProviderContext) {
    super();
  }

  override async onSign(_algorithm: Algorithm, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    requireMechanism(tk, CKM.EDDSA, this.name);
    return new Uint8Array(await sign(tk, { mechanism: CKM.EDDSA }, bytes(data), SIGNATURE_BYTES[this.name], false)).buffer;
  }

  override async onVerify(_algorithm: Algorithm, key: CryptoKey, signature: ArrayBuffer, data: ArrayBuffer): Promise<boolean> {
    const tk = tokenKey(key);
    requireMechanism(tk, CKM.EDDSA, this.name);
    return verify(tk, { mechanism: CKM.EDDSA }, bytes(data), bytes(signature));
  }

  override onGenerateKey(algorithm: Algorithm, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKeyPair> {
    requireMechanism(this.context.token!, CKM.EC_EDWARDS_KEY_PAIR_GEN, `${this.name} key generation`);
    return generateEc(this.context, algorithm, usages, USAGES);
  }

  override onImportKey(format: KeyFormat, keyData: JsonWebKey | ArrayBuffer, algorithm: Algorithm, extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    return importEc(this.context, format, keyData, algorithm, extractable, usages, USAGES);
  }

  override async onExportKey(_format: KeyFormat, key: CryptoKey): Promise<never> {
    refuseExport(key);
  }
}

export class HsmEd25519Provider extends EdwardsProvider {
  override name = "Ed25519" as const;
}

export class HsmEd448Provider extends EdwardsProvider {
  override name = "Ed448" as const;
}
