/** Hashing in the token (C_Digest), for hsm.crypto.subtle.digest. */
import type { Token } from "../pkcs11/token.js";
import { tokenError } from "../pkcs11/ckr.js";
import { mechanismName } from "../pkcs11/constants.js";
import { bytes } from "../pkcs11/operations.js";

export async function digest(token: Token, mechanism: number, data: BufferSource): Promise<ArrayBuffer> {
  const input = bytes(data as ArrayBuffer);
  try {
    const out = await token.run("inline", (session) => {
      token.lib.C_DigestInit(session, { mechanism });
      return token.lib.C_Digest(session, input, Buffer.alloc(64));
    });
    return new Uint8Array(out).buffer;
  } catch (error) {
    throw tokenError(error, `C_Digest (${mechanismName(mechanism)}) on ${token.describe()}`);
  }
}
