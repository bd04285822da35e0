/**
 * HsmKeySet for key management (guide: "HSMJWKSet for Key Management").
 *
 * Adds two token keys under chosen kids, looks one up, iterates, publishes the public JWKS
 * (what /.well-known/jwks.json serves), and verifies tokens two ways: with `keySet.resolver`
 * (picks the token key by the header's kid) and, as a relying party would, with jose's
 * createLocalJWKSet over the published JWKS.
 *
 *   npx tsx examples/key-set.ts
 */
import assert from "node:assert/strict";
import { SignJWT, createLocalJWKSet, jwtVerify } from "jose";
import { HsmKeySet, InvalidInputError, installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  await hsm.ensureKey("RS256", { label: "rsa-2048" });
  await hsm.ensureKey("ES256", { label: "ec-p256" });

  const keySet = new HsmKeySet(hsm);
  await keySet.add("rsa-2048", { kid: "rsa-signing", alg: "RS256" });
  await keySet.add("ec-p256", { kid: "ec-signing", alg: "ES256" });
  assert.equal(keySet.size, 2);
  // A kid is unique in a set
  await assert.rejects(keySet.add("ec-p256", { kid: "rsa-signing" }), (e: unknown) => e instanceof InvalidInputError && e.code === "ERR_HSM_DUPLICATE_KID");

  const key = keySet.get("rsa-signing");
  assert.ok(key);
  console.log(`get("rsa-signing"): ${key.kty} key, alg ${key.alg}, label ${key.label}`);
  for (const k of keySet) console.log(`  in the set: kid=${k.kid} kty=${k.kty} alg=${k.alg} can do: ${k.algorithms.join(" ")}`);

  const jwks = keySet.toJWKS();
  assert.deepEqual(jwks.keys.map((k) => k.kid), ["rsa-signing", "ec-signing"]);
  assert.ok(jwks.keys.every((k) => !("d" in k)));
  console.log(`JWKS for /.well-known/jwks.json: ${JSON.stringify(jwks).length} bytes, kids ${jwks.keys.map((k) => k.kid).join(", ")}`);

  const relyingParty = createLocalJWKSet(jwks);
  for (const k of keySet) {
    const jwt = await new SignJWT({ sub: "user123" }).setProtectedHeader({ alg: k.alg, kid: k.kid }).sign(k.privateKey!);
    const viaResolver = await jwtVerify(jwt, keySet.resolver);
    const viaJwks = await jwtVerify(jwt, relyingParty);
    assert.equal(viaResolver.protectedHeader.kid, k.kid);
    assert.equal(viaJwks.payload.sub, "user123");
    console.log(`${k.alg} JWT (kid ${k.kid}) verified with keySet.resolver and with the published JWKS`);
  }
  console.log("key set: OK");
} finally {
  await hsm.close();
}
