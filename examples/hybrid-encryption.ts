/**
 * Hybrid encryption pattern (guide: "Hybrid Encryption Pattern").
 *
 * The public JWK is exported and distributed; the sender imports it with jose's importJWK and
 * encrypts without any HSM. Only the token can decrypt: the private key is never exported.
 *
 *   npx tsx examples/hybrid-encryption.ts
 */
import assert from "node:assert/strict";
import { CompactEncrypt, compactDecrypt, importJWK } from "jose";
import { installShim, KeyExportError, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  const hsmKey = (await hsm.ensureKey("RS256", { label: "rsa-2048" })).as("RSA-OAEP");

  // The public key can be distributed (e.g. published in a JWKS)...
  const publicJwk = hsmKey.exportPublic();
  console.log(`public JWK: { kty: "${publicJwk.kty}", alg: "${publicJwk.alg}", use: "${publicJwk.use}", kid: "${publicJwk.kid}" }`);
  assert.equal(publicJwk.alg, "RSA-OAEP");
  // ...the private key cannot.
  assert.throws(() => hsmKey.exportPrivate(), KeyExportError);

  // Sender side: software only
  const senderKey = await importJWK(publicJwk, "RSA-OAEP");
  const encrypted = await new CompactEncrypt(new TextEncoder().encode("Secret message"))
    .setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM", kid: publicJwk.kid })
    .encrypt(senderKey);
  console.log(`sender encrypted without the HSM: ${encrypted.slice(0, 40)}...`);

  // Receiver side: the token decrypts
  const { plaintext, protectedHeader } = await compactDecrypt(encrypted, hsmKey.privateKey!);
  assert.equal(protectedHeader.kid, hsmKey.kid);
  assert.equal(new TextDecoder().decode(plaintext), "Secret message");
  console.log(`token decrypted: "${new TextDecoder().decode(plaintext)}"`);
  console.log("hybrid encryption: OK");
} finally {
  await hsm.close();
}
