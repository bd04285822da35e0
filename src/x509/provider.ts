/** The WebCrypto provider @peculiar/x509 signs with: one HsmCrypto per token, made on first use. */
import type { HsmKey } from "../jose/hsm-key.js";
import type { Token } from "../pkcs11/token.js";
import { HsmCrypto } from "../webcrypto/crypto.js";

const providers = new WeakMap<Token, HsmCrypto>();

export function tokenOf(key: HsmKey): Token {
  const part = key.objects.privateKey ?? key.objects.publicKey ?? key.objects.secretKey;
  if (!part) throw new TypeError("HsmKey has no token object");
  return part.token;
}

/** A `Crypto` whose subtle signs in the key's token (passed explicitly to every @peculiar/x509 call). */
export function cryptoFor(key: HsmKey): Crypto {
  const token = tokenOf(key);
  let crypto = providers.get(token);
  if (!crypto) {
    crypto = new HsmCrypto(token);
    providers.set(token, crypto);
  }
  return crypto as unknown as Crypto;
}
