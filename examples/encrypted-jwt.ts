/**
 * Encrypted JWT (guide: "Encrypted JWT").
 *
 * The claims are encrypted to the token's RSA key (RSA-OAEP + A256GCM) and decrypted in the token.
 *
 *   npx tsx examples/encrypted-jwt.ts
 */
import assert from "node:assert/strict";
import { EncryptJWT, jwtDecrypt } from "jose";
import { installShim, KeyNotFoundError, openHsm, type Hsm, type HsmKey } from "../src/index.js";

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
  const key = (await loadKey(hsm, "rsa-2048", "RS256")).as("RSA-OAEP");

  const encrypted = await new EncryptJWT({ sub: "user123", sensitive_data: "confidential" })
    .setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM", kid: key.kid })
    .setIssuedAt()
    .setExpirationTime("10m")
    .encrypt(key.publicKey!);
  assert.equal(encrypted.split(".").length, 5);
  assert.equal(encrypted.includes("confidential"), false);
  console.log(`encrypted JWT (5 parts, ${encrypted.length} chars): ${encrypted.slice(0, 48)}...`);

  const { payload, protectedHeader } = await jwtDecrypt(encrypted, key.privateKey!);
  assert.equal(protectedHeader.alg, "RSA-OAEP");
  assert.equal(payload.sub, "user123");
  assert.equal(payload.sensitive_data, "confidential");
  console.log(`decrypted in the token: sub=${payload.sub} sensitive_data=${payload.sensitive_data}`);
  console.log("encrypted JWT: OK");
} finally {
  await hsm.close();
}
