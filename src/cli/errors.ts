/** Exit codes of hsmkey (stable: scripts rely on them) and the usage error. */
import { HsmError } from "../errors.js";

export const EXIT = {
  OK: 0,
  /** The operation ran and its answer is "no" (a JWT that does not verify), or an unexpected failure. */
  FAILED: 1,
  /** Bad command line or input (unknown option, malformed JSON / PEM / JWK, bad subject). */
  USAGE: 2,
  /** The module, token or login failed (module not found, token not found, wrong PIN). */
  TOKEN: 3,
  /** No key matches the reference. */
  KEY_NOT_FOUND: 4,
  /** The algorithm is unknown or does not fit the key or token. */
  UNSUPPORTED: 5,
} as const;

export class UsageError extends Error {
  override name = "UsageError";
  readonly code = "ERR_USAGE";
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT.USAGE;
  if (error instanceof HsmError) {
    switch (error.code) {
      case "ERR_HSM_INVALID_INPUT":
      case "ERR_HSM_URI":
      case "ERR_HSM_DUPLICATE_KID":
        return EXIT.USAGE;
      case "ERR_HSM_MODULE_LOAD":
      case "ERR_HSM_TOKEN_NOT_FOUND":
      case "ERR_HSM_LOGIN":
      case "ERR_HSM_PIN_INCORRECT":
      case "ERR_HSM_PIN_LOCKED":
      case "ERR_HSM_SESSION":
      case "ERR_HSM_CLOSED":
      case "ERR_HSM_TIMEOUT":
        return EXIT.TOKEN;
      case "ERR_HSM_KEY_NOT_FOUND":
      case "ERR_HSM_KEY_AMBIGUOUS":
        return EXIT.KEY_NOT_FOUND;
      case "ERR_HSM_UNSUPPORTED_ALGORITHM":
        return EXIT.UNSUPPORTED;
      default:
        return EXIT.FAILED;
    }
  }
  return EXIT.FAILED;
}

/** One line naming the problem (and its code), never a stack. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const message = error.message.split("\n")[0] || error.name;
    return typeof code === "string" && code !== "ERR_USAGE" ? `${message} (${code})` : message;
  }
  return String(error);
}
