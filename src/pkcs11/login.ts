/**
 * Logging in to a token, once per process and token.
 *
 * PKCS#11 login state belongs to the application (the process) and the token, not to a session:
 * a second login answers CKR_USER_ALREADY_LOGGED_IN whatever PIN it gives. So that a wrong PIN is
 * refused there too, a digest of the PIN that logged in is kept per module and slot, with a count
 * of the Tokens relying on it. The PIN itself is never stored here.
 */
import { createHash } from "node:crypto";
import type * as pkcs11 from "pkcs11js";
import { LoginError } from "../errors.js";
import { ckrOf, tokenError } from "./ckr.js";
import { sleepSync } from "./sleep.js";

const CKU_USER = 1;

const loggedInWith = new Map<string, { digest: string; users: number }>();

function pinDigest(pin: string): string {
  return createHash("sha256").update("hsmkey-login\0").update(pin).digest("hex");
}

/** One Token's share in the login of its module and slot. */
export class LoginShare {
  readonly #slotKey: string;
  readonly #describe: string;
  #counted = false;

  constructor(modulePath: string, slotId: number, describe: string) {
    this.#slotKey = `${modulePath}#${slotId}`;
    this.#describe = describe;
  }

  /** Log in on `session` with `pin` (again, after a recovery, with the same PIN). */
  login(lib: pkcs11.PKCS11, session: pkcs11.Handle, pin: string): void {
    const digest = pinDigest(pin);
    const known = loggedInWith.get(this.#slotKey);
    if (known && !this.#counted && known.digest !== digest) {
      throw new LoginError(`Login to ${this.#describe} failed: CKR_PIN_INCORRECT`, "ERR_HSM_PIN_INCORRECT", { ckr: "CKR_PIN_INCORRECT" });
    }
    try {
      loginOnce(lib, session, pin);
    } catch (error) {
      if (ckrOf(error) !== "CKR_USER_ALREADY_LOGGED_IN" || (known && known.digest !== digest)) {
        const wrapped = tokenError(error, `Login to ${this.#describe}`);
        if (wrapped instanceof LoginError) throw wrapped;
        throw new LoginError(wrapped.message, "ERR_HSM_LOGIN", { ckr: wrapped.ckr, cause: error });
      }
    }
    this.#count(digest);
  }

  /** This Token no longer relies on the login (it closed). */
  release(): void {
    if (!this.#counted) return;
    this.#counted = false;
    const entry = loggedInWith.get(this.#slotKey);
    if (entry && --entry.users <= 0) loggedInWith.delete(this.#slotKey);
  }

  #count(digest: string): void {
    if (this.#counted) return;
    this.#counted = true;
    const entry = loggedInWith.get(this.#slotKey) ?? { digest, users: 0 };
    entry.digest = digest;
    entry.users++;
    loggedInWith.set(this.#slotKey, entry);
  }
}

/**
 * C_Login, tried up to three times when the token answers CKR_GENERAL_ERROR: SoftHSM does when
 * another process rewrites the token's files at that moment. That answer is not a PIN verdict
 * (those are CKR_PIN_*), so trying again cannot count against the PIN; anything else is final.
 */
function loginOnce(lib: pkcs11.PKCS11, session: pkcs11.Handle, pin: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      lib.C_Login(session, CKU_USER, pin);
      return;
    } catch (error) {
      if (ckrOf(error) !== "CKR_GENERAL_ERROR" || attempt === 3) throw error;
      sleepSync(20 * attempt);
    }
  }
}
