/**
 * Basic signing (guide: "JWS Signing / Basic Signing").
 *
 * Signs a payload with an RSA key that lives in the token (RS256), in compact and in flattened
 * JSON serialisation, and checks both signatures with the ordinary public CryptoKey.
 *
 *   npx tsx examples/basic-signing.ts
 */
import assert from "node:assert/strict";
import { CompactSign, FlattenedSign, compactVerify, flattenedVerify } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm(); // HSMKEY_* variables, or the embedded development token
try {
  installShim(); // jose calls crypto.subtle; the shim sends calls with HSM keys to the token

  const key = await hsm.ensureKey("RS256", { label: "rsa-2048" });
  const payload = new TextEncoder().encode(JSON.stringify({ sub: "user@example.com" }));

  // Compact serialisation: header.payload.signature
  const token = await new CompactSign(payload).setProtectedHeader({ alg: "RS256" }).sign(key.privateKey!);
  assert.equal(token.split(".").length, 3);
  console.log(`compact JWS (RS256, ${token.length} chars): ${token.slice(0, 48)}...`);

  // JSON (flattened) serialisation
  const json = await new FlattenedSign(payload).setProtectedHeader({ alg: "RS256" }).sign(key.privateKey!);
  assert.equal(typeof json.signature, "string");
  console.log(`flattened JWS: { protected, payload, signature } with a ${json.signature.length}-char signature`);

  const compact = await compactVerify(token, key.publicKey!);
  const flattened = await flattenedVerify(json, key.publicKey!);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(compact.payload)), { sub: "user@example.com" });
  assert.deepEqual(flattened.payload, compact.payload);
  console.log("basic signing: both signatures verified OK");
} finally {
  await hsm.close();
}
