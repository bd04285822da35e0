/**
 * hsmkey: keys in a PKCS#11 token (HSM) as WebCrypto CryptoKeys, for jose and every other
 * WebCrypto library.
 */
export { openHsm, withHsm, Hsm, type TokenInfo, type GenerateKeyOptions, type ImportKeyOptions } from "./hsm.js";
export type { HsmOptions } from "./options.js";
export type { ThreadModule } from "./pkcs11/module-copy.js";
export { HsmKey, type HsmKeyOptions, type KeyParts, type PublicJwk } from "./jose/hsm-key.js";
export { HsmKeySet, type ResolverHeader } from "./jose/key-set.js";
export { JOSE_ALGORITHMS, type JoseAlgorithm } from "./jose/algorithms.js";
export { probeAlgorithms, type ProbeResult } from "./jose/probe.js";
export { installShim, isShimInstalled } from "./shim/install.js";
export { HsmCrypto } from "./webcrypto/crypto.js";
export { HsmSubtleCrypto } from "./webcrypto/subtle.js";
export { isHsmCryptoKey } from "./webcrypto/crypto-key.js";
export type { KeyRef, KeyReference } from "./pkcs11/find-key.js";
export type { PoolStats } from "./pkcs11/pool.js";
export type { ThreadStats } from "./pkcs11/token-thread.js";
export { parsePkcs11Uri, formatPkcs11Uri, type Pkcs11Uri } from "./pkcs11/uri.js";
export { ensureEmbeddedToken, embeddedHome, type EmbeddedToken } from "./pkcs11/embedded.js";
export {
  HsmError,
  ModuleLoadError,
  TokenNotFoundError,
  LoginError,
  SessionError,
  KeyNotFoundError,
  KeyExportError,
  UnsupportedAlgorithmError,
  InvalidInputError,
  type HsmErrorCode,
} from "./errors.js";
