/** X.509 certificates signed by HSM keys: self-signed, and issued by a CA key in the token. */
import { randomBytes } from "node:crypto";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { InvalidInputError } from "../errors.js";
import { HsmKey } from "../jose/hsm-key.js";
import type { JoseAlgorithm } from "../jose/algorithms.js";
import { parseName, sanExtension, type SanInput } from "./names.js";
import { cryptoFor } from "./provider.js";
import { signerOf } from "./signing.js";

export interface CertificateOptions {
  /** Distinguished name of the subject, e.g. "CN=api.example.com". */
  subject: string;
  /** Validity in days from now (default 365). */
  days?: number;
  /** Start of validity (default now). */
  notBefore?: Date;
  /** Hex serial number (default 16 random bytes, positive). */
  serialNumber?: string;
  /** subjectAltName entries ("dns:...", "ip:...", "email:...", "uri:..."). */
  sans?: readonly SanInput[];
  /** A CA certificate (basicConstraints cA, keyCertSign). Default: true for self-signed, false for issued. */
  ca?: boolean;
  /** Extensions to add; they replace the defaults (basicConstraints, keyUsage, key identifiers) of the same type. */
  extensions?: x509.Extension[];
  /** Signature algorithm (RS256, PS256, ES256, EdDSA...); default from the signing key. */
  alg?: JoseAlgorithm | string;
}

export interface IssueOptions extends CertificateOptions {
  /** The issuer's certificate (its subject becomes the issuer name). */
  issuer: x509.X509Certificate;
  /** The subject's public key: an HsmKey, a CryptoKey, or an x509 PublicKey. */
  publicKey: HsmKey | CryptoKey | x509.PublicKey;
}

/** A self-signed certificate for `key`, signed in the token. */
export async function createSelfSignedCertificate(key: HsmKey, options: CertificateOptions): Promise<x509.X509Certificate> {
  const signer = signerOf(key, options.alg);
  const crypto = cryptoFor(key);
  const ca = options.ca ?? true;
  const defaults = await defaultExtensions(signer.keys.publicKey, ca, undefined, crypto);
  const name = parseName(options.subject);
  return x509.X509CertificateGenerator.create(
    {
      ...validity(options),
      subject: name,
      issuer: name,
      publicKey: signer.keys.publicKey,
      signingKey: signer.keys.privateKey,
      signingAlgorithm: signer.signingAlgorithm,
      extensions: merge(defaults, options),
    },
    crypto,
  );
}

/** A certificate for `options.publicKey`, issued by `issuerKey` (whose certificate is `options.issuer`). */
export async function issueCertificate(issuerKey: HsmKey, options: IssueOptions): Promise<x509.X509Certificate> {
  const signer = signerOf(issuerKey, options.alg);
  const crypto = cryptoFor(issuerKey);
  const issuerSpki = new Uint8Array(await crypto.subtle.exportKey("spki", signer.keys.publicKey));
  if (!Buffer.from(issuerSpki).equals(Buffer.from(options.issuer.publicKey.rawData))) {
    throw new InvalidInputError(`The issuer certificate '${options.issuer.subject}' is not for key '${issuerKey.kid}'`);
  }
  const subjectKey = options.publicKey instanceof HsmKey ? publicCryptoKey(options.publicKey) : options.publicKey;
  const defaults = await defaultExtensions(subjectKey, options.ca ?? false, options.issuer, crypto);
  return x509.X509CertificateGenerator.create(
    {
      ...validity(options),
      subject: parseName(options.subject),
      issuer: options.issuer.subjectName,
      publicKey: subjectKey,
      signingKey: signer.keys.privateKey,
      signingAlgorithm: signer.signingAlgorithm,
      extensions: merge(defaults, options),
    },
    crypto,
  );
}

function publicCryptoKey(key: HsmKey): CryptoKey {
  if (!key.publicKey) throw new InvalidInputError(`Key '${key.kid}' has no public key`);
  return key.publicKey;
}

function validity(options: CertificateOptions): { notBefore: Date; notAfter: Date; serialNumber: string } {
  const days = options.days ?? 365;
  if (!Number.isFinite(days) || days <= 0) throw new InvalidInputError(`Validity must be a positive number of days, got ${days}`);
  const notBefore = options.notBefore ?? new Date(Math.floor(Date.now() / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + days * 86_400_000);
  let serialNumber = options.serialNumber;
  if (serialNumber === undefined) {
    const bytes = randomBytes(16);
    bytes[0] = (bytes[0]! & 0x7f) | 0x01; // positive, and no leading zero byte
    serialNumber = bytes.toString("hex");
  } else if (!/^([0-9a-fA-F]{2})+$/.test(serialNumber)) {
    throw new InvalidInputError(`Serial number '${serialNumber}' is not an even number of hex digits`);
  }
  return { notBefore, notAfter, serialNumber };
}

async function defaultExtensions(
  subjectKey: CryptoKey | x509.PublicKey,
  ca: boolean,
  issuer: x509.X509Certificate | undefined,
  crypto: Crypto,
): Promise<x509.Extension[]> {
  const usages = ca
    ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature
    : x509.KeyUsageFlags.digitalSignature;
  const out: x509.Extension[] = [
    new x509.BasicConstraintsExtension(ca, undefined, true),
    new x509.KeyUsagesExtension(usages, true),
    await x509.SubjectKeyIdentifierExtension.create(subjectKey, false, crypto),
  ];
  if (issuer) out.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.publicKey, false, crypto));
  return out;
}

function merge(defaults: x509.Extension[], options: CertificateOptions): x509.Extension[] {
  const extra = [...(options.extensions ?? [])];
  if (options.sans?.length) extra.push(sanExtension(options.sans));
  const replaced = new Set(extra.map((e) => e.type));
  return [...defaults.filter((e) => !replaced.has(e.type)), ...extra];
}
