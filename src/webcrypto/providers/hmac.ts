/** HMAC in the token (CKM_SHA*_HMAC). SoftHSM wants keys at least as long as the hash. */
import * as core from "webcrypto-core";
import { CKM } from "../../pkcs11/constants.js";
import { bytes, sign, verify } from "../../pkcs11/operations.js";
import { HASH_BYTES, hashName, requireMechanism, tokenKey, type ProviderContext } from "./context.js";
import { generateSecret, importSecret, secretBytes } from "./secret-keys.js";
import { refuseExport } from "./rsa-keys.js";

const MECHANISM = { "SHA-1": 0x221, "SHA-256": CKM.SHA256_HMAC, "SHA-384": CKM.SHA384_HMAC, "SHA-512": CKM.SHA512_HMAC } as const;
const BLOCK_BYTES = { "SHA-1": 64, "SHA-256": 64, "SHA-384": 128, "SHA-512": 128 } as const;
const USAGES: KeyUsage[] = ["sign", "verify"];

function mechanismOf(key: CryptoKey) {
  const tk = tokenKey(key);
  const hash = hashName((key.algorithm as HmacKeyAlgorithm).hash);
  requireMechanism(tk, MECHANISM[hash], `HMAC with ${hash}`);
  return { tk, hash, mechanism: { mechanism: MECHANISM[hash] } };
}

export class HsmHmacProvider extends core.HmacProvider {
  constructor(private readonly context: ProviderContext) {
    super();
  }

  override async onSign(_algorithm: Algorithm, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const { tk, hash, mechanism } = mechanismOf(key);
    return new Uint8Array(await sign(tk, mechanism, bytes(data), HASH_BYTES[hash], false)).buffer;
  }

  override async onVerify(_algorithm: Algorithm, key: CryptoKey, signature: ArrayBuffer, data: ArrayBuffer): Promise<boolean> {
    const { tk, hash, mechanism } = mechanismOf(key);
    if (signature.byteLength !== HASH_BYTES[hash]) return false;
    return verify(tk, mechanism, bytes(data), bytes(signature));
  }

  override onGenerateKey(algorithm: HmacKeyGenParams, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    const hash = hashName(algorithm.hash);
    const bits = algorithm.length ?? BLOCK_BYTES[hash] * 8;
    return generateSecret(this.context, "HMAC", Math.ceil(bits / 8), { name: "HMAC", hash: { name: hash }, length: bits }, usages, USAGES);
  }

  override onImportKey(format: KeyFormat, keyData: JsonWebKey | ArrayBuffer, algorithm: HmacImportParams, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    const value = secretBytes(format, keyData);
    const hash = hashName(algorithm.hash);
    return importSecret(this.context, "HMAC", value, { name: "HMAC", hash: { name: hash }, length: value.length * 8 }, usages, USAGES);
  }

  override async onExportKey(_format: KeyFormat, key: CryptoKey): Promise<never> {
    refuseExport(key);
  }
}
