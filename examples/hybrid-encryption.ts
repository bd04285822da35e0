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
import { installShim, KeyExportError, KeyNotFoundError, openHsm, type Hsm, type HsmKey } from "../src/index.js";

async function loadKey(hsm: Hsm, label: string, alg: string, options: { modulusLength?: number } = {}): Promise<HsmKey> {
  try {
    return await hsm.getKey(label, { alg });
  } catch (error) {
    if (!(error instanceof KeyNotFoundError)) throw error;
    return hsm.generateKey(alg, { label, ...options });
  }
}

const hsm = await openHsm();
try {
  installShim();
  const hsmKey = (await loadKey(hsm, "rsa-2048", "RS256")).as("RSA-OAEP");

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
