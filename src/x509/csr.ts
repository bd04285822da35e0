/** PKCS#10 certificate signing requests for HSM keys, signed in the token. */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import type { HsmKey } from "../jose/hsm-key.js";
import type { JoseAlgorithm } from "../jose/algorithms.js";
import { parseName, sanExtension, type SanInput } from "./names.js";
import { cryptoFor } from "./provider.js";
import { signerOf } from "./signing.js";

export interface CsrOptions {
  /** Distinguished name, e.g. "CN=api.example.com, O=Example". */
  subject: string;
  /** subjectAltName entries: "dns:api.example.com", "ip:10.0.0.1", "email:...", "uri:...". */
  sans?: readonly SanInput[];
  /** Further extensions to request. */
  extensions?: x509.Extension[];
  /** Signature algorithm (RS256, PS256, ES256, EdDSA...); default from the key. */
  alg?: JoseAlgorithm | string;
}

export async function createCsr(key: HsmKey, options: CsrOptions): Promise<x509.Pkcs10CertificateRequest> {
  const signer = signerOf(key, options.alg);
  const extensions = [...(options.extensions ?? [])];
  if (options.sans?.length) extensions.push(sanExtension(options.sans));
  return x509.Pkcs10CertificateRequestGenerator.create(
    { name: parseName(options.subject), keys: signer.keys, signingAlgorithm: signer.signingAlgorithm, extensions },
    cryptoFor(key),
  );
}
