/**
 * Verification (guide: "Verification").
 *
 * A JWS signed in the token is verified twice: with the HsmKey's public CryptoKey, and with the
 * exported public JWK imported by jose's importJWK (software only: what a relying party does).
 * A tampered token is rejected by both.
 *
 *   npx tsx examples/verification.ts
 */
import assert from "node:assert/strict";
import { CompactSign, compactVerify, errors, importJWK } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  for (const [label, alg] of [["rsa-2048", "RS256"], ["ec-p256", "ES256"]] as const) {
    const key = await hsm.ensureKey(alg, { label });
    const payload = new TextEncoder().encode(`signed by ${label}`);
    const token = await new CompactSign(payload).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey!);

    // 1. With the HSM key's public half
    const withHsmKey = await compactVerify(token, key.publicKey!);
    assert.deepEqual(withHsmKey.payload, payload);

    // 2. With the exported public JWK, imported by jose (no HSM involved)
    const jwk = key.exportPublic();
    assert.equal(jwk.kid, key.kid);
    assert.equal("d" in jwk, false);
    const publicKey = await importJWK(jwk, alg);
    const withJwk = await compactVerify(token, publicKey);
    assert.deepEqual(withJwk.payload, payload);
    console.log(`${alg}: verified with the HSM public key and with the exported JWK (kty ${jwk.kty}, kid ${jwk.kid.slice(0, 12)}...)`);

    // 3. A changed payload fails verification
    const [h, , s] = token.split(".");
    const forged = `${h}.${Buffer.from("forged").toString("base64url")}.${s}`;
    await assert.rejects(compactVerify(forged, publicKey), errors.JWSSignatureVerificationFailed);
    await assert.rejects(compactVerify(forged, key.publicKey!), errors.JWSSignatureVerificationFailed);
    console.log(`${alg}: tampered token rejected`);
  }
  console.log("verification: OK");
} finally {
  await hsm.close();
}
