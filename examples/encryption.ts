/**
 * JWE encryption (guide: "JWE Encryption / Encryption").
 *
 * Encrypts to an RSA key in the token with RSA-OAEP (the OAEP variant SoftHSM2 supports: SHA-1)
 * and each content encryption algorithm, in compact serialisation (5 parts). Encrypting only
 * needs the public key; the example decrypts each result in the token to show it round-trips.
 *
 *   npx tsx examples/encryption.ts
 */
import assert from "node:assert/strict";
import { CompactEncrypt, compactDecrypt } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  const key = (await hsm.ensureKey("RS256", { label: "rsa-2048" })).as("RSA-OAEP"); // same key pair, shaped for RSA-OAEP
  const plaintext = new TextEncoder().encode("Confidential data");

  for (const enc of ["A128GCM", "A192GCM", "A256GCM", "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512"]) {
    const jwe = await new CompactEncrypt(plaintext).setProtectedHeader({ alg: "RSA-OAEP", enc }).encrypt(key.publicKey!);
    assert.equal(jwe.split(".").length, 5);
    const { plaintext: back, protectedHeader } = await compactDecrypt(jwe, key.privateKey!);
    assert.equal(protectedHeader.enc, enc);
    assert.deepEqual(back, plaintext);
    console.log(`RSA-OAEP + ${enc.padEnd(13)} compact JWE of ${jwe.length} chars, decrypted in the token OK`);
  }
  console.log("encryption: OK");
} finally {
  await hsm.close();
}
