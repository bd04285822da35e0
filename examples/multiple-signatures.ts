/**
 * Signing with multiple keys (guide: "Signing with Multiple Keys").
 *
 * One payload, two signatures (RS256 with an RSA key, ES256 with a P-256 key, both in the token),
 * in the general JSON serialisation; each signature is then checked with its public key.
 *
 *   npx tsx examples/multiple-signatures.ts
 */
import assert from "node:assert/strict";
import { GeneralSign, generalVerify } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  const rsa = await hsm.ensureKey("RS256", { label: "rsa-2048" });
  const ec = await hsm.ensureKey("ES256", { label: "ec-p256" });
  const payload = new TextEncoder().encode(JSON.stringify({ sub: "user@example.com" }));

  const sign = new GeneralSign(payload);
  sign.addSignature(rsa.privateKey!).setProtectedHeader({ alg: "RS256", kid: "rsa-key" });
  sign.addSignature(ec.privateKey!).setProtectedHeader({ alg: "ES256", kid: "ec-key" });
  const jws = await sign.sign();
  assert.equal(jws.signatures.length, 2);
  console.log(`general JWS with ${jws.signatures.length} signatures: ${jws.signatures.map((s) => JSON.parse(Buffer.from(s.protected!, "base64url").toString()).alg).join(", ")}`);

  // generalVerify succeeds when the key verifies one of the signatures.
  const byRsa = await generalVerify(jws, rsa.publicKey!);
  const byEc = await generalVerify(jws, ec.publicKey!);
  assert.equal(byRsa.protectedHeader?.kid, "rsa-key");
  assert.equal(byEc.protectedHeader?.kid, "ec-key");
  assert.deepEqual(byRsa.payload, payload);
  console.log(`verified with the RSA public key (kid ${byRsa.protectedHeader?.kid}) and with the EC public key (kid ${byEc.protectedHeader?.kid})`);
  console.log("multiple signatures: OK");
} finally {
  await hsm.close();
}
