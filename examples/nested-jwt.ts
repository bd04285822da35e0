/**
 * Nested JWT, signed then encrypted (guide: "Nested JWT").
 *
 * The claims are signed with an ES256 key, and the signed JWT is encrypted with RSA-OAEP to an
 * RSA key (cty "JWT"). The receiver decrypts, then verifies the inner JWT. Both keys are in the token.
 *
 *   npx tsx examples/nested-jwt.ts
 */
import assert from "node:assert/strict";
import { CompactEncrypt, SignJWT, compactDecrypt, jwtVerify } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  const signingKey = await hsm.ensureKey("ES256", { label: "ec-p256" });
  const encryptionKey = (await hsm.ensureKey("RS256", { label: "rsa-2048" })).as("RSA-OAEP");

  // Sign...
  const inner = await new SignJWT({ sub: "user123", role: "admin" })
    .setProtectedHeader({ alg: "ES256", kid: signingKey.kid })
    .setIssuedAt()
    .sign(signingKey.privateKey!);
  // ...then encrypt the signed JWT
  const nested = await new CompactEncrypt(new TextEncoder().encode(inner))
    .setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM", cty: "JWT" })
    .encrypt(encryptionKey.publicKey!);
  console.log(`nested JWT: ES256-signed JWT of ${inner.length} chars inside a JWE of ${nested.length} chars`);

  // Receiver: decrypt, then verify
  const outer = await compactDecrypt(nested, encryptionKey.privateKey!);
  assert.equal(outer.protectedHeader.cty, "JWT");
  const innerJwt = new TextDecoder().decode(outer.plaintext);
  assert.equal(innerJwt, inner);
  const { payload, protectedHeader } = await jwtVerify(innerJwt, signingKey.publicKey!);
  assert.equal(protectedHeader.alg, "ES256");
  assert.equal(payload.sub, "user123");
  assert.equal(payload.role, "admin");
  console.log(`decrypted (RSA-OAEP) then verified (ES256): sub=${payload.sub} role=${payload.role}`);
  console.log("nested JWT: OK");
} finally {
  await hsm.close();
}
