/**
 * Turning pkcs11js failures into hsmkey's typed errors. pkcs11js throws `Pkcs11Error` whose
 * message is the CKR_* name and whose `code` is the numeric return value.
 */
import { HsmError, LoginError, SessionError, UnsupportedAlgorithmError, type HsmErrorCode } from "../errors.js";

/** The CKR_* name of a pkcs11js error, or undefined when the error did not come from the token. */
export function ckrOf(error: unknown): string | undefined {
  if (error instanceof Error && /^CKR_[A-Z0-9_]+$/.test(error.message)) return error.message;
  return undefined;
}

/**
 * Return values that mean the session, the login, or the whole token connection is gone. A stale
 * object handle is among them: SoftHSM drops private-object handles when the login is lost, and a
 * recovery looks every key up again by identity anyway.
 */
export const SESSION_LOST = new Set([
  "CKR_OBJECT_HANDLE_INVALID",
  "CKR_KEY_HANDLE_INVALID",
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
  "CKR_USER_NOT_LOGGED_IN",
  "CKR_DEVICE_REMOVED",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_DEVICE_ERROR",
  "CKR_CRYPTOKI_NOT_INITIALIZED",
]);

/**
 * Wrap a token failure of `what` (e.g. "C_Sign with CKM_ECDSA on token 'x'") as an HsmError.
 * Errors that are already HsmErrors pass through unchanged.
 */
export function tokenError(error: unknown, what: string): HsmError {
  if (error instanceof HsmError) return error;
  const ckr = ckrOf(error);
  const detail = ckr ?? (error instanceof Error ? error.message : String(error));
  const message = `${what} failed: ${detail}`;
  if (ckr === "CKR_PIN_INCORRECT") return new LoginError(message, "ERR_HSM_PIN_INCORRECT", { ckr, cause: error });
  if (ckr === "CKR_PIN_LOCKED") return new LoginError(message, "ERR_HSM_PIN_LOCKED", { ckr, cause: error });
  if (ckr !== undefined && SESSION_LOST.has(ckr)) return new SessionError(message, "ERR_HSM_SESSION", { ckr, cause: error });
  if (ckr === "CKR_MECHANISM_INVALID" || ckr === "CKR_CURVE_NOT_SUPPORTED" || ckr === "CKR_DOMAIN_PARAMS_INVALID") {
    return new UnsupportedAlgorithmError(message, { ckr, cause: error });
  }
  const code: HsmErrorCode = "ERR_HSM";
  return new HsmError(message, code, { ckr, cause: error });
}
