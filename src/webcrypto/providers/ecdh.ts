/**
 * ECDH in the token (CKM_ECDH1_DERIVE, CKD_NULL). The peer's public key may be an ordinary
 * CryptoKey. The derived secret is created as a throwaway session object, read, and destroyed.
 */
import * as core from "webcrypto-core";
import type { IParams } from "pkcs11js";
import { CKD_NULL, CKM, PARAMS } from "../../pkcs11/constants.js";
import { CURVES } from "../../pkcs11/curves.js";
import { deriveSecret } from "../../pkcs11/operations.js";
import { operationError } from "../dom-errors.js";
import { isHsmCryptoKey } from "../crypto-key.js";
import { nativeSubtle } from "../native.js";
import { generateEc, importEc } from "./ec-keys.js";
import { requireMechanism, tokenKey, type ProviderContext } from "./context.js";
import { refuseExport } from "./rsa-keys.js";

const USAGES = { privateKey: ["deriveBits", "deriveKey"] as KeyUsage[], publicKey: [] as KeyUsage[] };

export class HsmEcdhProvider extends core.EcdhProvider {
  constructor(private readonly context: ProviderContext) {
    super();
  }

  /** webcrypto-core insists on its own CryptoKey class for `public`; any CryptoKey will do here. */
  override checkAlgorithmParams(algorithm: EcdhKeyDeriveParams): void {
    const pub = algorithm.public as CryptoKey | undefined;
    if (!pub || (pub as unknown as Record<symbol, unknown>)[Symbol.toStringTag] !== "CryptoKey") throw new TypeError("public: Is not a CryptoKey");
    if (pub.type !== "public") throw operationError("public: Is not a public key");
    if (pub.algorithm.name !== "ECDH") throw operationError("public: Is not an ECDH key");
    if (isHsmCryptoKey(pub)) throw operationError("public: must be an ordinary public CryptoKey");
  }

  override async onDeriveBits(algorithm: EcdhKeyDeriveParams, baseKey: CryptoKey, length: number | null): Promise<ArrayBuffer> {
    const tk = tokenKey(baseKey);
    requireMechanism(tk, CKM.ECDH1_DERIVE, "ECDH");
    const curve = tk.info.curve!;
    if ((algorithm.public.algorithm as EcKeyAlgorithm).namedCurve !== curve) {
      throw operationError(`public: key is on ${(algorithm.public.algorithm as EcKeyAlgorithm).namedCurve}, base key on ${curve}`);
    }
    const size = CURVES[curve].size;
    if (length !== null && length > size * 8) throw operationError(`length: at most ${size * 8} bits on ${curve}`);
    const publicData = Buffer.from(await nativeSubtle.exportKey("raw", algorithm.public));
    const secret = await deriveSecret(tk, { mechanism: CKM.ECDH1_DERIVE, parameter: { type: PARAMS.EC_DH, kdf: CKD_NULL, publicData } as IParams }, size);
    const bits = length ?? size * 8;
    const out = new Uint8Array(secret.subarray(0, Math.ceil(bits / 8)));
    if (bits % 8) out[out.length - 1]! &= 0xff << (8 - (bits % 8));
    return out.buffer;
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
