/**
 * Public JWKs with their stored certificate: what `HsmKey.exportPublic()` and
 * `HsmKeySet.toJWKS()` give, plus `x5c` and `x5t#S256` when the token holds a certificate.
 */
import type { Hsm } from "../hsm.js";
import type { HsmKey, PublicJwk } from "../jose/hsm-key.js";
import type { HsmKeySet } from "../jose/key-set.js";
import { getCertificate } from "./store.js";
import { x5cOf, x5tS256Of } from "./thumbprints.js";

export type PublicJwkWithCertificate = PublicJwk & { x5c?: string[]; "x5t#S256"?: string };

export async function exportPublicWithCertificate(hsm: Hsm, key: HsmKey): Promise<PublicJwkWithCertificate> {
  const jwk: PublicJwkWithCertificate = key.exportPublic();
  const cert = await getCertificate(hsm, key);
  if (cert) {
    jwk.x5c = x5cOf(cert);
    jwk["x5t#S256"] = x5tS256Of(cert);
  }
  return jwk;
}

/** The public JWKS of `keys` (a key set or a list), with certificates where stored. Secret keys are left out. */
export async function jwksWithCertificates(hsm: Hsm, keys: HsmKeySet | Iterable<HsmKey>): Promise<{ keys: PublicJwkWithCertificate[] }> {
  const out: PublicJwkWithCertificate[] = [];
  for (const key of keys) {
    if (key.kty === "oct" || !key.publicKey) continue;
    out.push(await exportPublicWithCertificate(hsm, key));
  }
  return { keys: out };
}
