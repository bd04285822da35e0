/**
 * Which hashes a token accepts for RSA-OAEP, found by asking it once: C_EncryptInit on a throwaway
 * session public key, in a session of its own that is closed at once (ending the operation and
 * destroying the key). Needed because SoftHSM 2.6 lists CKM_RSA_PKCS_OAEP yet refuses every hash
 * but SHA-1, so the mechanism list alone would offer RSA-OAEP-256 keys that cannot decrypt.
 *
 * The answer is cached per token. A probe that cannot run (no session, no session objects) says
 * yes: the mechanism list decides, and a refusal at decryption is still a typed error.
 */
import type * as pkcs11 from "pkcs11js";
import { ckrOf } from "./ckr.js";
import { CKA, CKK, CKM, CKO, CKZ_DATA_SPECIFIED, HASH_MECHANISM, HASH_MGF, PARAMS, type HashName } from "./constants.js";
import type { Token } from "./token.js";

const CKF_SERIAL_SESSION = 4;

/** Return values with which tokens refuse OAEP parameters they do not implement. */
export const OAEP_PARAMS_REFUSED: ReadonlySet<string> = new Set(["CKR_MECHANISM_PARAM_INVALID", "CKR_ARGUMENTS_BAD", "CKR_MECHANISM_INVALID"]);

const answers = new WeakMap<Token, Map<HashName, boolean>>();

/** Whether `token` accepts CKM_RSA_PKCS_OAEP with `hash` (and MGF1 of the same hash). */
export function acceptsOaepHash(token: Token, hash: HashName): boolean {
  let known = answers.get(token);
  if (!known) answers.set(token, (known = new Map()));
  let answer = known.get(hash);
  if (answer === undefined) {
    answer = ask(token.lib, token.slot, hash);
    known.set(hash, answer);
  }
  return answer;
}

function ask(lib: pkcs11.PKCS11, slot: pkcs11.Handle, hash: HashName): boolean {
  let session: pkcs11.Handle;
  try {
    session = lib.C_OpenSession(slot, CKF_SERIAL_SESSION);
  } catch {
    return true;
  }
  try {
    const key = lib.C_CreateObject(session, [
      { type: CKA.CLASS, value: CKO.PUBLIC_KEY },
      { type: CKA.KEY_TYPE, value: CKK.RSA },
      { type: CKA.TOKEN, value: false },
      { type: CKA.ENCRYPT, value: true },
      // Any odd 2048-bit number serves: C_EncryptInit judges the parameters, not the modulus.
      { type: CKA.MODULUS, value: Buffer.alloc(256, 0xff) },
      { type: CKA.PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    ]);
    const parameter = { type: PARAMS.RSA_OAEP, hashAlg: HASH_MECHANISM[hash], mgf: HASH_MGF[hash], source: CKZ_DATA_SPECIFIED } as pkcs11.IParams;
    lib.C_EncryptInit(session, { mechanism: CKM.RSA_PKCS_OAEP, parameter }, key);
    return true;
  } catch (error) {
    return !OAEP_PARAMS_REFUSED.has(ckrOf(error) ?? "");
  } finally {
    try {
      lib.C_CloseSession(session);
    } catch {
      // Gone already: so are its operation and key.
    }
  }
}
