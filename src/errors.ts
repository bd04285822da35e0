/**
 * Typed errors of hsmkey. Every error has a stable `code` (part of the public API) and, when a
 * PKCS#11 call failed, the `ckr` name the token answered (e.g. "CKR_PIN_INCORRECT").
 * Messages name what was wrong (module path, token label, key reference, algorithm) and never a PIN.
 */

export type HsmErrorCode =
  | "ERR_HSM"
  | "ERR_HSM_MODULE_LOAD"
  | "ERR_HSM_TOKEN_NOT_FOUND"
  | "ERR_HSM_LOGIN"
  | "ERR_HSM_PIN_INCORRECT"
  | "ERR_HSM_PIN_LOCKED"
  | "ERR_HSM_SESSION"
  | "ERR_HSM_CLOSED"
  | "ERR_HSM_KEY_NOT_FOUND"
  | "ERR_HSM_KEY_AMBIGUOUS"
  | "ERR_HSM_KEY_EXPORT"
  | "ERR_HSM_UNSUPPORTED_ALGORITHM"
  | "ERR_HSM_INVALID_INPUT"
  | "ERR_HSM_URI"
  | "ERR_HSM_TIMEOUT"
  | "ERR_HSM_DUPLICATE_KID";

export interface HsmErrorOptions {
  cause?: unknown;
  /** The CKR_* name PKCS#11 returned, when the error comes from the token. */
  ckr?: string;
}

export class HsmError extends Error {
  readonly code: HsmErrorCode;
  readonly ckr: string | undefined;

  constructor(message: string, code: HsmErrorCode = "ERR_HSM", options: HsmErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.ckr = options.ckr;
  }
}

/** The PKCS#11 module could not be loaded or initialised (missing file, not a PKCS#11 library). */
export class ModuleLoadError extends HsmError {
  constructor(message: string, options?: HsmErrorOptions) {
    super(message, "ERR_HSM_MODULE_LOAD", options);
  }
}

/** No token matched the label / serial / slot given. */
export class TokenNotFoundError extends HsmError {
  constructor(message: string, options?: HsmErrorOptions) {
    super(message, "ERR_HSM_TOKEN_NOT_FOUND", options);
  }
}

/** Login failed. A wrong PIN is never retried: tokens lock a PIN after a few failures. */
export class LoginError extends HsmError {
  constructor(
    message: string,
    code: "ERR_HSM_LOGIN" | "ERR_HSM_PIN_INCORRECT" | "ERR_HSM_PIN_LOCKED" = "ERR_HSM_LOGIN",
    options?: HsmErrorOptions,
  ) {
    super(message, code, options);
  }
}

/** A session could not be opened or was lost, or the Hsm was used after close(). */
export class SessionError extends HsmError {
  constructor(
    message: string,
    code: "ERR_HSM_SESSION" | "ERR_HSM_CLOSED" | "ERR_HSM_TIMEOUT" = "ERR_HSM_SESSION",
    options?: HsmErrorOptions,
  ) {
    super(message, code, options);
  }
}

/** No key (or more than one, where one was expected) matched the reference. */
export class KeyNotFoundError extends HsmError {
  constructor(
    message: string,
    code: "ERR_HSM_KEY_NOT_FOUND" | "ERR_HSM_KEY_AMBIGUOUS" = "ERR_HSM_KEY_NOT_FOUND",
    options?: HsmErrorOptions,
  ) {
    super(message, code, options);
  }
}

/** Private and secret key material never leaves the token. */
export class KeyExportError extends HsmError {
  constructor(message: string, options?: HsmErrorOptions) {
    super(message, "ERR_HSM_KEY_EXPORT", options);
  }
}

/** The algorithm is unknown, does not fit the key, or the token lacks the mechanism. */
export class UnsupportedAlgorithmError extends HsmError {
  constructor(message: string, options?: HsmErrorOptions) {
    super(message, "ERR_HSM_UNSUPPORTED_ALGORITHM", options);
  }
}

/** Malformed input: a JWK, PEM, pkcs11: URI, option or argument. */
export class InvalidInputError extends HsmError {
  constructor(message: string, code: "ERR_HSM_INVALID_INPUT" | "ERR_HSM_URI" | "ERR_HSM_DUPLICATE_KID" = "ERR_HSM_INVALID_INPUT", options?: HsmErrorOptions) {
    super(message, code, options);
  }
}
