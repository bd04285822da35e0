/**
 * Certificates on the token: a CKO_CERTIFICATE (CKC_X_509) object per key, carrying the key's
 * CKA_ID and label so that PKCS#11 tools (and `hsm.deleteKey`) pair it with the key.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { InvalidInputError } from "../errors.js";
import type { Hsm } from "../hsm.js";
import { attachCertificate, type HsmKey } from "../jose/hsm-key.js";
import { deleteCertificateObjects, findCertificateValues, storeCertificateObject } from "../pkcs11/certificates.js";
import { cryptoFor } from "./provider.js";

export interface StoreCertificateOptions {
  /** Remove certificates already stored for the key (default true: one certificate per key). */
  replace?: boolean;
}

/** Parse a certificate from PEM, base64 DER, or DER bytes, with an error naming the problem. */
export function parseCertificate(input: string | BufferSource | x509.X509Certificate): x509.X509Certificate {
  if (input instanceof x509.X509Certificate) return input;
  try {
    return new x509.X509Certificate(input);
  } catch (error) {
    throw new InvalidInputError(`Not an X.509 certificate (PEM or DER): ${(error as Error).message}`, "ERR_HSM_INVALID_INPUT", { cause: error });
  }
}

/**
 * Store `cert` on the token as the certificate of `key`. The certificate's public key must be the
 * key's. Returns the number of certificates it replaced.
 */
export async function storeCertificate(
  hsm: Hsm,
  key: HsmKey,
  certificate: x509.X509Certificate | string | BufferSource,
  options: StoreCertificateOptions = {},
): Promise<number> {
  const cert = parseCertificate(certificate);
  await assertCertificateOfKey(key, cert);
  const replaced = await storeCertificateObject(
    hsm.token,
    key,
    {
      der: new Uint8Array(cert.rawData),
      subject: new Uint8Array(cert.subjectName.toArrayBuffer()),
      issuer: new Uint8Array(cert.issuerName.toArrayBuffer()),
      serialNumber: derInteger(cert.serialNumber),
    },
    options.replace !== false,
  );
  attachCertificate(key, new Uint8Array(cert.rawData));
  return replaced;
}

/** The certificate stored for `key` (the first whose public key is the key's), or undefined. */
export async function getCertificate(hsm: Hsm, key: HsmKey): Promise<x509.X509Certificate | undefined> {
  for (const cert of await getCertificates(hsm, key)) {
    if (await isCertificateOfKey(key, cert)) return cert;
  }
  return undefined;
}

/** Every certificate object stored with the key's CKA_ID (or label, for keys without an id). */
export async function getCertificates(hsm: Hsm, key: HsmKey): Promise<x509.X509Certificate[]> {
  const out: x509.X509Certificate[] = [];
  for (const der of await findCertificateValues(hsm.token, key)) {
    try {
      out.push(new x509.X509Certificate(new Uint8Array(der)));
    } catch {
      // not a certificate hsmkey can read: skipped
    }
  }
  return out;
}

/** Destroy the certificates stored for `key`. Returns how many. */
export async function deleteCertificates(hsm: Hsm, key: HsmKey): Promise<number> {
  const deleted = await deleteCertificateObjects(hsm.token, key);
  attachCertificate(key, undefined);
  return deleted;
}

async function spkiOf(key: HsmKey): Promise<Buffer> {
  if (!key.publicKey) throw new InvalidInputError(`Key '${key.kid}' has no public key`);
  return Buffer.from(await cryptoFor(key).subtle.exportKey("spki", key.publicKey));
}

export async function isCertificateOfKey(key: HsmKey, cert: x509.X509Certificate): Promise<boolean> {
  if (key.kty === "oct" || !key.publicKey) return false;
  return (await spkiOf(key)).equals(Buffer.from(cert.publicKey.rawData));
}

async function assertCertificateOfKey(key: HsmKey, cert: x509.X509Certificate): Promise<void> {
  if (key.kty === "oct") throw new InvalidInputError(`Key '${key.kid}' is a secret key: it has no certificate`);
  if (!(await isCertificateOfKey(key, cert))) {
    throw new InvalidInputError(`The certificate '${cert.subject}' is for another public key than key '${key.kid}'`);
  }
}

/** DER INTEGER of a hex serial number (CKA_SERIAL_NUMBER holds the DER encoding). */
export function derInteger(hex: string): Uint8Array {
  let bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex");
  while (bytes.length > 1 && bytes[0] === 0 && bytes[1]! < 0x80) bytes = bytes.subarray(1);
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if (bytes[0]! >= 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return new Uint8Array(Buffer.concat([Buffer.from([0x02]), derLength(bytes.length), bytes]));
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  for (let v = n; v > 0; v >>= 8) b.unshift(v & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}
