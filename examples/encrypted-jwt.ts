/**
 * Encrypted JWT (guide: "Encrypted JWT").
 *
 * The claims are encrypted to the token's RSA key (RSA-OAEP + A256GCM) and decrypted in the token.
 *
 *   npx tsx examples/encrypted-jwt.ts
 */
import assert from "node:assert/strict";
import { EncryptJWT, jwtDecrypt } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  const key = (await hsm.ensureKey("RS256", { label: "rsa-2048" })).as("RSA-OAEP");

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
