/**
 * Key rotation (guide: "Key Rotation Pattern").
 *
 * key-v1 (RSA 2048, RS256) signed the tokens already out there; key-v2 (RSA 3072, RS384) signs
 * new ones. While both are in the set, the resolver verifies both generations. Once key-v1 is
 * retired from the set, its tokens are refused.
 *
 *   npx tsx examples/key-rotation.ts
 */
import assert from "node:assert/strict";
import { SignJWT, jwtVerify } from "jose";
import { HsmKeySet, installShim, KeyNotFoundError, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  await hsm.ensureKey("RS256", { label: "rsa-2048" });
  await hsm.ensureKey("RS384", { label: "rsa-3072", modulusLength: 3072 });

  const keySet = new HsmKeySet(hsm);
  const oldKey = await keySet.add("rsa-2048", { kid: "key-v1", alg: "RS256" });
  // A token issued before the rotation
  const oldToken = await new SignJWT({ sub: "user123", gen: 1 }).setProtectedHeader({ alg: "RS256", kid: "key-v1" }).sign(oldKey.privateKey!);

  // Rotation: the new key signs from now on
  const newKey = await keySet.add("rsa-3072", { kid: "key-v2", alg: "RS384" });
  assert.equal((newKey.publicKey!.algorithm as RsaHashedKeyAlgorithm).modulusLength, 3072);
  const newToken = await new SignJWT({ sub: "user123", gen: 2 }).setProtectedHeader({ alg: "RS384", kid: "key-v2" }).sign(newKey.privateKey!);

  const verifiedOld = await jwtVerify(oldToken, keySet.resolver);
  const verifiedNew = await jwtVerify(newToken, keySet.resolver);
  assert.equal(verifiedOld.payload.gen, 1);
  assert.equal(verifiedNew.payload.gen, 2);
  console.log(`old token (kid ${verifiedOld.protectedHeader.kid}, ${verifiedOld.protectedHeader.alg}) and new token (kid ${verifiedNew.protectedHeader.kid}, ${verifiedNew.protectedHeader.alg}) both verify`);
  console.log(`published JWKS during the overlap: ${keySet.toJWKS().keys.map((k) => k.kid).join(", ")}`);

  // Retire key-v1 (the token object stays; hsm.deleteKey would destroy it)
  assert.equal(keySet.delete("key-v1"), true);
  await assert.rejects(jwtVerify(oldToken, keySet.resolver), KeyNotFoundError);
  assert.equal((await jwtVerify(newToken, keySet.resolver)).payload.gen, 2);
  console.log(`after retiring key-v1: old token refused, new token still verifies; JWKS: ${keySet.toJWKS().keys.map((k) => k.kid).join(", ")}`);
  console.log("key rotation: OK");
} finally {
  await hsm.close();
}
