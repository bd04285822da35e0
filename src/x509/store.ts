/**
 * Certificates on the token: a CKO_CERTIFICATE (CKC_X_509) object per key, carrying the key's
 * CKA_ID and label so that PKCS#11 tools (and `hsm.deleteKey`) pair it with the key.
 */
import "./reflect.js";
import * as x509 from "@peculiar/x509";
import type * as pkcs11 from "pkcs11js";
import { InvalidInputError } from "../errors.js";
import type { Hsm } from "../hsm.js";
import type { HsmKey } from "../jose/hsm-key.js";
import { findObjects, readAttributes } from "../pkcs11/attributes.js";
import { tokenError } from "../pkcs11/ckr.js";
import { CKA, CKC_X_509, CKO } from "../pkcs11/constants.js";
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
  const token = hsm.token;
  const template: pkcs11.Template = [
    { type: CKA.CLASS, value: CKO.CERTIFICATE },
    { type: CKA.CERTIFICATE_TYPE, value: CKC_X_509 },
    { type: CKA.TOKEN, value: true },
    { type: CKA.PRIVATE, value: false },
    { type: CKA.SUBJECT, value: Buffer.from(cert.subjectName.toArrayBuffer()) },
    { type: CKA.ISSUER, value: Buffer.from(cert.issuerName.toArrayBuffer()) },
    { type: CKA.SERIAL_NUMBER, value: derInteger(cert.serialNumber) },
    { type: CKA.VALUE, value: Buffer.from(cert.rawData) },
  ];
  if (key.label !== undefined) template.push({ type: CKA.LABEL, value: key.label });
  if (key.id?.length) template.push({ type: CKA.ID, value: Buffer.from(key.id) });
  const find = certificateTemplate(key);
  return wrap(
    token.withSession((session) => {
      const old = options.replace === false ? [] : findObjects(token.lib, session, find);
      token.lib.C_CreateObject(session, template);
      for (const h of old) token.lib.C_DestroyObject(session, h);
      return old.length;
    }),
    `Storing the certificate of key '${key.kid}' (C_CreateObject) on ${token.describe()}`,
  );
}

/** The certificate stored for `key` (the first whose public key is the key's), or undefined. */
export async function getCertificate(hsm: Hsm, key: HsmKey): Promise<x509.X509Certificate | undefined> {
  const certs = await getCertificates(hsm, key);
  for (const cert of certs) {
    if (await isCertificateOfKey(key, cert)) return cert;
  }
  return undefined;
}

/** Every certificate object stored with the key's CKA_ID (or label, for keys without an id). */
export async function getCertificates(hsm: Hsm, key: HsmKey): Promise<x509.X509Certificate[]> {
  const token = hsm.token;
  const find = certificateTemplate(key);
  const values = await wrap(
    token.withSession((session) => findObjects(token.lib, session, find).map((h) => readAttributes(token.lib, session, h, [CKA.VALUE]).get(CKA.VALUE))),
    `Reading the certificates of key '${key.kid}' on ${token.describe()}`,
  );
  const out: x509.X509Certificate[] = [];
  for (const value of values) {
    if (!value?.length) continue;
    try {
      out.push(new x509.X509Certificate(new Uint8Array(value)));
    } catch {
      // not a certificate hsmkey can read: skipped
    }
  }
  return out;
}

/** Destroy the certificates stored for `key`. Returns how many. */
export async function deleteCertificates(hsm: Hsm, key: HsmKey): Promise<number> {
  const token = hsm.token;
  const find = certificateTemplate(key);
  return wrap(
    token.withSession((session) => {
      const handles = findObjects(token.lib, session, find);
      for (const h of handles) token.lib.C_DestroyObject(session, h);
      return handles.length;
    }),
    `Deleting the certificates of key '${key.kid}' on ${token.describe()}`,
  );
}

async function wrap<T>(pending: Promise<T>, what: string): Promise<T> {
  try {
    return await pending;
  } catch (error) {
    throw tokenError(error, what);
  }
}

function certificateTemplate(key: HsmKey): pkcs11.Template {
  const t: pkcs11.Template = [
    { type: CKA.CLASS, value: CKO.CERTIFICATE },
    { type: CKA.CERTIFICATE_TYPE, value: CKC_X_509 },
  ];
  if (key.id?.length) t.push({ type: CKA.ID, value: Buffer.from(key.id) });
  else if (key.label !== undefined) t.push({ type: CKA.LABEL, value: key.label });
  else throw new InvalidInputError(`Key '${key.kid}' has neither CKA_ID nor label: a certificate cannot be paired with it`);
  return t;
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
export function derInteger(hex: string): Buffer {
  let bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex");
  while (bytes.length > 1 && bytes[0] === 0 && bytes[1]! < 0x80) bytes = bytes.subarray(1);
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if (bytes[0]! >= 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return Buffer.concat([Buffer.from([0x02]), derLength(bytes.length), bytes]);
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  for (let v = n; v > 0; v >>= 8) b.unshift(v & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}
