/**
 * Certificate objects on the token: CKO_CERTIFICATE / CKC_X_509, paired with their key by CKA_ID
 * (or by label for keys without an id), which is how PKCS#11 tools pair them too. This layer stores
 * and finds DER bytes; parsing and checking certificates is the caller's business.
 */
import type * as pkcs11 from "pkcs11js";
import { InvalidInputError } from "../errors.js";
import { findObjects, readAttributes, type Template } from "./attributes.js";
import { tokenError } from "./ckr.js";
import { CKA, CKC_X_509, CKO } from "./constants.js";
import type { Token } from "./token.js";

export interface CertificateOwner {
  label?: string | undefined;
  id?: Uint8Array | undefined;
}

export interface CertificateObject {
  /** The certificate, DER. */
  der: Uint8Array;
  /** DER of the subject and issuer Names, and of the serial number INTEGER. */
  subject: Uint8Array;
  issuer: Uint8Array;
  serialNumber: Uint8Array;
}

function ownerTemplate(owner: CertificateOwner): Template {
  const t: Template = [
    { type: CKA.CLASS, value: CKO.CERTIFICATE },
    { type: CKA.CERTIFICATE_TYPE, value: CKC_X_509 },
  ];
  if (owner.id?.length) t.push({ type: CKA.ID, value: Buffer.from(owner.id) });
  else if (owner.label !== undefined) t.push({ type: CKA.LABEL, value: owner.label });
  else throw new InvalidInputError("A key without CKA_ID or label cannot be paired with a certificate");
  return t;
}

async function onToken<T>(token: Token, what: string, fn: (session: pkcs11.Handle) => T): Promise<T> {
  try {
    return await token.withSession(fn);
  } catch (error) {
    throw tokenError(error, `${what} on ${token.describe()}`);
  }
}

/** Store a certificate for `owner`; with `replace`, destroy the ones stored before. Returns how many it replaced. */
export function storeCertificateObject(token: Token, owner: CertificateOwner, cert: CertificateObject, replace = true): Promise<number> {
  const find = ownerTemplate(owner);
  const template: Template = [
    { type: CKA.CLASS, value: CKO.CERTIFICATE },
    { type: CKA.CERTIFICATE_TYPE, value: CKC_X_509 },
    { type: CKA.TOKEN, value: true },
    { type: CKA.PRIVATE, value: false },
    { type: CKA.SUBJECT, value: Buffer.from(cert.subject) },
    { type: CKA.ISSUER, value: Buffer.from(cert.issuer) },
    { type: CKA.SERIAL_NUMBER, value: Buffer.from(cert.serialNumber) },
    { type: CKA.VALUE, value: Buffer.from(cert.der) },
  ];
  if (owner.label !== undefined) template.push({ type: CKA.LABEL, value: owner.label });
  if (owner.id?.length) template.push({ type: CKA.ID, value: Buffer.from(owner.id) });
  return onToken(token, "Storing a certificate (C_CreateObject)", (session) => {
    const old = replace ? findObjects(token.lib, session, find) : [];
    token.lib.C_CreateObject(session, template);
    for (const h of old) token.lib.C_DestroyObject(session, h);
    return old.length;
  });
}

/** DER of every certificate stored for `owner`. */
export function findCertificateValues(token: Token, owner: CertificateOwner): Promise<Uint8Array[]> {
  const find = ownerTemplate(owner);
  return onToken(token, "Reading certificates", (session) =>
    findObjects(token.lib, session, find)
      .map((h) => readAttributes(token.lib, session, h, [CKA.VALUE]).get(CKA.VALUE))
      .filter((v): v is Buffer => !!v?.length)
      .map((v) => new Uint8Array(v)),
  );
}

/** Destroy the certificates stored for `owner`. Returns how many. */
export function deleteCertificateObjects(token: Token, owner: CertificateOwner): Promise<number> {
  const find = ownerTemplate(owner);
  return onToken(token, "Deleting certificates", (session) => {
    const handles = findObjects(token.lib, session, find);
    for (const h of handles) token.lib.C_DestroyObject(session, h);
    return handles.length;
  });
}
