/** JWK certificate members (RFC 7517 §4.7, §4.9): `x5c` and `x5t#S256`. */
import { createHash } from "node:crypto";
import type * as x509 from "@peculiar/x509";

/** `x5c`: standard base64 (not base64url) DER of the certificate, then its issuers, in order. */
export function x5cOf(cert: x509.X509Certificate | readonly x509.X509Certificate[]): string[] {
  const chain = Array.isArray(cert) ? cert : [cert as x509.X509Certificate];
  return chain.map((c) => Buffer.from(c.rawData).toString("base64"));
}

/** `x5t#S256`: base64url SHA-256 of the certificate's DER. */
export function x5tS256Of(cert: x509.X509Certificate): string {
  return createHash("sha256").update(Buffer.from(cert.rawData)).digest("base64url");
}
