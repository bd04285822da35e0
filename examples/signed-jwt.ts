/**
 * Signed JWT (guide: "JWT Tokens / Signed JWT" and "JWT Verification").
 *
 * Issues an RS256 JWT with iss/sub/aud/iat/exp and kid "jwt-key", signed in the token, and
 * verifies it with issuer and audience checks. A token for another audience is rejected.
 *
 *   npx tsx examples/signed-jwt.ts
 */
import assert from "node:assert/strict";
import { SignJWT, errors, jwtVerify } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  await hsm.ensureKey("RS256", { label: "rsa-2048" });
  const key = await hsm.getKey("rsa-2048", { kid: "jwt-key", alg: "RS256" });
  assert.equal(key.kid, "jwt-key");

  const now = Math.floor(Date.now() / 1000);
  const jwt = await new SignJWT({ scope: "read" })
    .setProtectedHeader({ alg: "RS256", kid: key.kid, typ: "JWT" })
    .setIssuer("https://auth.example.com")
    .setSubject("user123")
    .setAudience("https://api.example.com")
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(key.privateKey!);
  console.log(`signed JWT: ${jwt.slice(0, 60)}...`);

  const { payload, protectedHeader } = await jwtVerify(jwt, key.publicKey!, {
    issuer: "https://auth.example.com",
    audience: "https://api.example.com",
  });
  assert.equal(protectedHeader.kid, "jwt-key");
  assert.equal(payload.sub, "user123");
  assert.equal(payload.exp, now + 3600);
  console.log(`verified claims: sub=${payload.sub} iss=${payload.iss} aud=${payload.aud} exp in ${payload.exp! - now}s`);

  await assert.rejects(jwtVerify(jwt, key.publicKey!, { audience: "https://other.example.com" }), errors.JWTClaimValidationFailed);
  console.log("a verifier expecting another audience rejects it");
  console.log("signed JWT: OK");
} finally {
  await hsm.close();
}
