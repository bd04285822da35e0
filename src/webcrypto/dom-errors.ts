/**
 * WebCrypto reports failures as DOMExceptions with well-known names. These helpers make them, with
 * the underlying hsmkey error (if any) as `cause`.
 */
import { HsmError, LoginError, SessionError, KeyNotFoundError } from "../errors.js";

export type DomErrorName = "NotSupportedError" | "InvalidAccessError" | "OperationError" | "DataError" | "SyntaxError";

export function domError(name: DomErrorName, message: string, cause?: unknown): DOMException {
  const error = new DOMException(message, name);
  if (cause !== undefined) Object.defineProperty(error, "cause", { value: cause, configurable: true, writable: true });
  return error;
}

export const notSupported = (message: string, cause?: unknown) => domError("NotSupportedError", message, cause);
export const invalidAccess = (message: string, cause?: unknown) => domError("InvalidAccessError", message, cause);
export const operationError = (message: string, cause?: unknown) => domError("OperationError", message, cause);
export const dataError = (message: string, cause?: unknown) => domError("DataError", message, cause);

/**
 * Map an error thrown inside a SubtleCrypto call to what WebCrypto callers expect. Session, login
 * and missing-key failures stay hsmkey errors (an operator must see them as they are); other token
 * failures become OperationError; webcrypto-core's validation errors get their WebCrypto names.
 */
export function toWebCryptoError(error: unknown): unknown {
  if (error instanceof DOMException || error instanceof TypeError || error instanceof RangeError) return error;
  if (error instanceof SessionError || error instanceof LoginError || error instanceof KeyNotFoundError) return error;
  if (error instanceof HsmError) {
    if (error.code === "ERR_HSM_UNSUPPORTED_ALGORITHM") return notSupported(error.message, error);
    if (error.code === "ERR_HSM_KEY_EXPORT") return invalidAccess(error.message, error);
    return operationError(error.message, error);
  }
  if (error instanceof Error) {
    switch (error.name) {
      case "AlgorithmError":
      case "UnsupportedOperationError":
        return notSupported(error.message, error);
      case "CryptoError":
        return invalidAccess(error.message, error);
      case "OperationError":
        return operationError(error.message, error);
      case "RequiredPropertyError":
        return new TypeError(error.message, { cause: error });
    }
  }
  return error;
}
