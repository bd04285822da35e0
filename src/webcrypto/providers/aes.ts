/**
 * AES in the token: AES-GCM (CKM_AES_GCM with the v2.40 parameter struct, which sets ulIvBits) and
 * AES-KW (CKM_AES_KEY_WRAP through C_WrapKey/C_UnwrapKey, the one route every token offers).
 */
import * as core from "webcrypto-core";
import type { IParams } from "pkcs11js";
import { CKM, PARAMS } from "../../pkcs11/constants.js";
import { bytes, decrypt, encrypt, unwrapBytes, wrapBytes } from "../../pkcs11/operations.js";
import { dataError, operationError } from "../dom-errors.js";
import { requireMechanism, tokenKey, type ProviderContext } from "./context.js";
import { generateSecret, importSecret, secretBytes } from "./secret-keys.js";
import { refuseExport } from "./rsa-keys.js";

function checkLength(bytes: number): void {
  if (bytes !== 16 && bytes !== 24 && bytes !== 32) throw dataError("AES keys are 128, 192 or 256 bits");
}

function generateAes(context: ProviderContext, name: string, bits: number, usages: KeyUsage[], allowed: KeyUsage[]): Promise<CryptoKey> {
  checkLength(bits / 8);
  return generateSecret(context, "AES", bits / 8, { name, length: bits }, usages, allowed);
}

function importAes(context: ProviderContext, name: string, value: Uint8Array, usages: KeyUsage[], allowed: KeyUsage[]): Promise<CryptoKey> {
  checkLength(value.length);
  return importSecret(context, "AES", value, { name, length: value.length * 8 }, usages, allowed);
}

export class HsmAesGcmProvider extends core.AesGcmProvider {
  constructor(private readonly context: ProviderContext) {
    super();
  }

  #mechanism(algorithm: AesGcmParams) {
    const iv = bytes(algorithm.iv);
    const aad = algorithm.additionalData ? bytes(algorithm.additionalData) : undefined;
    const parameter = { type: PARAMS.AES_GCM_V240, iv, ivBits: iv.length * 8, tagBits: algorithm.tagLength ?? 128, ...(aad && aad.length ? { aad } : {}) };
    return { mechanism: CKM.AES_GCM, parameter: parameter as IParams };
  }

  override async onEncrypt(algorithm: AesGcmParams, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    requireMechanism(tk, CKM.AES_GCM, "AES-GCM");
    const input = bytes(data);
    const out = await encrypt(tk, this.#mechanism(algorithm), input, input.length + 16, false);
    return new Uint8Array(out).buffer;
  }

  override async onDecrypt(algorithm: AesGcmParams, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    requireMechanism(tk, CKM.AES_GCM, "AES-GCM");
    const input = bytes(data);
    if (input.length < (algorithm.tagLength ?? 128) / 8) throw operationError("AES-GCM ciphertext is shorter than its tag");
    try {
      return new Uint8Array(await decrypt(tk, this.#mechanism(algorithm), input, input.length, false)).buffer;
    } catch (error) {
      throw operationError("AES-GCM decryption failed (wrong key, IV, AAD or a tampered ciphertext)", error);
    }
  }

  override onGenerateKey(algorithm: AesKeyGenParams, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    return generateAes(this.context, "AES-GCM", algorithm.length, usages, this.usages as KeyUsage[]);
  }

  override onImportKey(format: KeyFormat, keyData: JsonWebKey | ArrayBuffer, _algorithm: Algorithm, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    return importAes(this.context, "AES-GCM", secretBytes(format, keyData), usages, this.usages as KeyUsage[]);
  }

  override async onExportKey(_format: KeyFormat, key: CryptoKey): Promise<never> {
    refuseExport(key);
  }
}

export class HsmAesKwProvider extends core.AesKwProvider {
  constructor(private readonly context: ProviderContext) {
    super();
  }

  /** Reached only through wrapKey: wraps raw key bytes (RFC 3394). */
  override async onEncrypt(_algorithm: Algorithm, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    requireMechanism(tk, CKM.AES_KEY_WRAP, "AES-KW");
    const input = bytes(data);
    if (input.length < 16 || input.length % 8) throw dataError("AES-KW wraps keys of at least 16 bytes, in multiples of 8");
    return new Uint8Array(await wrapBytes(tk, { mechanism: CKM.AES_KEY_WRAP }, input)).buffer;
  }

  /** Reached only through unwrapKey. */
  override async onDecrypt(_algorithm: Algorithm, key: CryptoKey, data: ArrayBuffer): Promise<ArrayBuffer> {
    const tk = tokenKey(key);
    requireMechanism(tk, CKM.AES_KEY_WRAP, "AES-KW");
    try {
      return new Uint8Array(await unwrapBytes(tk, { mechanism: CKM.AES_KEY_WRAP }, bytes(data))).buffer;
    } catch (error) {
      throw operationError("AES-KW unwrap failed (wrong key or tampered data)", error);
    }
  }

  override onGenerateKey(algorithm: AesKeyGenParams, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    return generateAes(this.context, "AES-KW", algorithm.length, usages, this.usages as KeyUsage[]);
  }

  override onImportKey(format: KeyFormat, keyData: JsonWebKey | ArrayBuffer, _algorithm: Algorithm, _extractable: boolean, usages: KeyUsage[]): Promise<CryptoKey> {
    return importAes(this.context, "AES-KW", secretBytes(format, keyData), usages, this.usages as KeyUsage[]);
  }

  override async onExportKey(_format: KeyFormat, key: CryptoKey): Promise<never> {
    refuseExport(key);
  }
}
