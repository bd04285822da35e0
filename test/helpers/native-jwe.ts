/**
 * Compact JWE with node:crypto only (no WebCrypto, no jose): RSA-OAEP (SHA-1) key encryption and
 * `dir`, with AES-GCM or AES-CBC + HMAC-SHA2 content encryption (RFC 7518 §5.2, §5.3). Used to check
 * that what the token decrypts was produced by an independent implementation, and to decrypt what
 * the token produced.
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHmac,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  timingSafeEqual,
  type CipherGCMTypes,
  type KeyObject,
} from "node:crypto";
import { nodePublicKey } from "./native.js";

const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");

/** Content-encryption key length in bytes for `enc`. */
export function cekLength(enc: string): number {
  const gcm = /^A(128|192|256)GCM$/.exec(enc);
  if (gcm) return Number(gcm[1]) / 8;
  const cbc = /^A(128|192|256)CBC-HS(256|384|512)$/.exec(enc);
  if (cbc) return (Number(cbc[1]) / 8) * 2;
  throw new Error(`unknown enc ${enc}`);
}

function al(aad: Buffer): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(aad.length * 8));
  return out;
}

function encryptContent(enc: string, cek: Buffer, plaintext: Buffer, aad: Buffer): { iv: Buffer; ciphertext: Buffer; tag: Buffer } {
  if (enc.endsWith("GCM")) {
    const iv = randomBytes(12);
    const cipher = createCipheriv(`aes-${cek.length * 8}-gcm` as CipherGCMTypes, cek, iv);
    cipher.setAAD(aad);
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { iv, ciphertext, tag: cipher.getAuthTag() };
  }
  const half = cek.length / 2;
  const macKey = cek.subarray(0, half);
  const encKey = cek.subarray(half);
  const iv = randomBytes(16);
  const cipher = createCipheriv(`aes-${half * 8}-cbc`, encKey, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const mac = createHmac(`sha${half * 16}`, macKey).update(Buffer.concat([aad, iv, ciphertext, al(aad)])).digest();
  return { iv, ciphertext, tag: mac.subarray(0, half) };
}

function decryptContent(enc: string, cek: Buffer, iv: Buffer, ciphertext: Buffer, tag: Buffer, aad: Buffer): Buffer {
  if (enc.endsWith("GCM")) {
    const decipher = createDecipheriv(`aes-${cek.length * 8}-gcm` as CipherGCMTypes, cek, iv);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  }
  const half = cek.length / 2;
  const mac = createHmac(`sha${half * 16}`, cek.subarray(0, half)).update(Buffer.concat([aad, iv, ciphertext, al(aad)])).digest();
  if (!timingSafeEqual(mac.subarray(0, half), tag)) throw new Error("CBC-HS tag mismatch");
  const decipher = createDecipheriv(`aes-${half * 8}-cbc`, cek.subarray(half), iv);
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
}

/** Encrypt `plaintext` to an RSA public JWK with RSA-OAEP (SHA-1), as a compact JWE. */
export function nodeEncryptRsaOaep(publicJwk: JsonWebKey, enc: string, plaintext: Uint8Array, extraHeader: Record<string, unknown> = {}): string {
  const header = b64u(Buffer.from(JSON.stringify({ alg: "RSA-OAEP", enc, ...extraHeader })));
  const cek = randomBytes(cekLength(enc));
  const encryptedKey = publicEncrypt({ key: nodePublicKey(publicJwk), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, cek);
  const { iv, ciphertext, tag } = encryptContent(enc, cek, Buffer.from(plaintext), Buffer.from(header));
  return [header, b64u(encryptedKey), b64u(iv), b64u(ciphertext), b64u(tag)].join(".");
}

/** Encrypt with `dir` and a raw content-encryption key, as a compact JWE. */
export function nodeEncryptDir(cek: Uint8Array, enc: string, plaintext: Uint8Array): string {
  const header = b64u(Buffer.from(JSON.stringify({ alg: "dir", enc })));
  const { iv, ciphertext, tag } = encryptContent(enc, Buffer.from(cek), Buffer.from(plaintext), Buffer.from(header));
  return [header, "", b64u(iv), b64u(ciphertext), b64u(tag)].join(".");
}

/** Decrypt a compact `dir` JWE with the raw key. */
export function nodeDecryptDir(compact: string, cek: Uint8Array): Buffer {
  const [h, k, iv, c, t] = compact.split(".") as [string, string, string, string, string];
  if (k !== "") throw new Error("not a dir JWE");
  const enc = JSON.parse(Buffer.from(h, "base64url").toString("utf8")).enc as string;
  return decryptContent(enc, Buffer.from(cek), Buffer.from(iv, "base64url"), Buffer.from(c, "base64url"), Buffer.from(t, "base64url"), Buffer.from(h));
}

/** Decrypt a compact RSA-OAEP JWE with a native private key. */
export function nodeDecryptRsaOaep(compact: string, privateKey: KeyObject): Buffer {
  const [h, k, iv, c, t] = compact.split(".") as [string, string, string, string, string];
  const enc = JSON.parse(Buffer.from(h, "base64url").toString("utf8")).enc as string;
  const cek = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, Buffer.from(k, "base64url"));
  return decryptContent(enc, cek, Buffer.from(iv, "base64url"), Buffer.from(c, "base64url"), Buffer.from(t, "base64url"), Buffer.from(h));
}
