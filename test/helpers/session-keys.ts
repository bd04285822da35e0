/**
 * Session keys made by `hsm.crypto.subtle.generateKey/importKey` live on the token until the Hsm
 * closes (keygen.ts: they sit on the anchor session). Tests that make them destroy them at the end,
 * checking they made exactly as many as expected, so the end-of-file leftovers check still proves
 * that nothing else (derived ECDH secrets, unwrapped keys of failed calls...) was left behind.
 */
import type { Hsm } from "../../src/index.js";
import { findObjects } from "../../src/pkcs11/attributes.js";
import { CKA } from "../../src/pkcs11/constants.js";

/** Destroy every session object on the token; returns how many there were. */
export async function destroySessionObjects(hsm: Hsm): Promise<number> {
  const token = hsm.token;
  return token.withSession((session) => {
    const handles = findObjects(token.lib, session, [{ type: CKA.TOKEN, value: false }], 100000);
    for (const h of handles) token.lib.C_DestroyObject(session, h);
    return handles.length;
  });
}
