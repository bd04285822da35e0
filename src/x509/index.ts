/** X.509 for HSM keys: CSRs and certificates signed in the token, certificates stored on it. */
import "reflect-metadata";
export { createCsr, type CsrOptions } from "./csr.js";
export { createSelfSignedCertificate, issueCertificate, type CertificateOptions, type IssueOptions } from "./certificate.js";
export {
  storeCertificate,
  getCertificate,
  getCertificates,
  deleteCertificates,
  parseCertificate,
  isCertificateOfKey,
  type StoreCertificateOptions,
} from "./store.js";
export { x5cOf, x5tS256Of } from "./thumbprints.js";
export { signerOf, type Signer } from "./signing.js";
export { parseSan, type SanInput } from "./names.js";
