/**
 * `npm run demo`: a short tour of hsmkey on the embedded development token.
 *
 * JWS with RS256, ES256 and EdDSA; JWE with RSA-OAEP + A256GCM; signed, encrypted and nested JWTs;
 * a JWKS. Every private-key operation runs in the token; every result is checked.
 */
import assert from "node:assert/strict";
import { CompactEncrypt, CompactSign, EncryptJWT, SignJWT, compactDecrypt, compactVerify, createLocalJWKSet, importJWK, jwtDecrypt, jwtVerify } from "jose";
import { embeddedHome, HsmKeySet, installShim, openHsm } from "../src/index.js";

const short = (s: string, n = 56) => (s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

const hsm = await openHsm();
try {
  const info = hsm.info;
  console.log("hsmkey demo");
  console.log("===========");
  console.log(`token: '${info.label}' (${info.manufacturer.trim()} ${info.model.trim()}, serial ${info.serial})`);
  if (info.embedded) {
    console.log(`This is the embedded DEVELOPMENT token in ${embeddedHome()}: SoftHSM2 software keys whose PIN sits in a file beside them.`);
    console.log("It is not an HSM: do not use it in production. Set HSMKEY_MODULE / HSMKEY_TOKEN / HSMKEY_PIN_FILE to use a real token.");
  }
  installShim();
  console.log("");

  const rsa = await hsm.ensureKey("RS256", { label: "rsa-2048" });
  const ec = await hsm.ensureKey("ES256", { label: "ec-p256" });
  const ed = await hsm.ensureKey("EdDSA", { label: "ed25519" });
  console.log("keys (created on first run, found on later runs):");
  for (const k of [rsa, ec, ed]) console.log(`  ${(k.label ?? "").padEnd(9)} ${k.kty.padEnd(3)} kid ${k.kid}  can do: ${k.algorithms.join(" ")}`);
  console.log("");

  console.log("1. JWS: signed in the token, verified in software with the exported public JWK");
  const payload = new TextEncoder().encode("Hello from the token");
  for (const [key, alg] of [[rsa, "RS256"], [ec, "ES256"], [ed, "EdDSA"]] as const) {
    const jws = await new CompactSign(payload).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey!);
    const verified = await compactVerify(jws, await importJWK(key.exportPublic(), alg));
    assert.equal(text(verified.payload), "Hello from the token");
    console.log(`   ${alg.padEnd(5)} ${short(jws)}  verified`);
  }
  console.log("");

  console.log("2. JWE: RSA-OAEP + A256GCM, encrypted to the public key, decrypted in the token");
  const oaep = rsa.as("RSA-OAEP");
  const jwe = await new CompactEncrypt(new TextEncoder().encode("Confidential data")).setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM" }).encrypt(oaep.publicKey!);
  const decrypted = await compactDecrypt(jwe, oaep.privateKey!);
  assert.equal(text(decrypted.plaintext), "Confidential data");
  console.log(`   ${short(jwe)}`);
  console.log(`   decrypted: "${text(decrypted.plaintext)}"`);
  console.log("");

  console.log("3. JWT: signed (RS256), encrypted (RSA-OAEP), nested (ES256 inside RSA-OAEP)");
  const signed = await new SignJWT({ sub: "user123" }).setProtectedHeader({ alg: "RS256", kid: rsa.kid }).setIssuer("https://auth.example.com").setAudience("https://api.example.com").setIssuedAt().setExpirationTime("1h").sign(rsa.privateKey!);
  const s = await jwtVerify(signed, rsa.publicKey!, { issuer: "https://auth.example.com", audience: "https://api.example.com" });
  assert.equal(s.payload.sub, "user123");
  console.log(`   signed:    ${short(signed)}  sub=${s.payload.sub}`);
  const encrypted = await new EncryptJWT({ sub: "user123", secret: "s3cr3t" }).setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM" }).setIssuedAt().encrypt(oaep.publicKey!);
  const e = await jwtDecrypt(encrypted, oaep.privateKey!);
  assert.equal(e.payload.secret, "s3cr3t");
  console.log(`   encrypted: ${short(encrypted)}  secret=${e.payload.secret}`);
  const inner = await new SignJWT({ sub: "user123", role: "admin" }).setProtectedHeader({ alg: "ES256", kid: ec.kid }).setIssuedAt().sign(ec.privateKey!);
  const nested = await new CompactEncrypt(new TextEncoder().encode(inner)).setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM", cty: "JWT" }).encrypt(oaep.publicKey!);
  const n = await jwtVerify(text((await compactDecrypt(nested, oaep.privateKey!)).plaintext), ec.publicKey!);
  assert.equal(n.payload.role, "admin");
  console.log(`   nested:    ${short(nested)}  role=${n.payload.role}`);
  console.log("");

  console.log("4. JWKS: the public keys, for /.well-known/jwks.json");
  const keySet = new HsmKeySet();
  for (const k of [rsa, ec, ed]) await keySet.add(k);
  const jwks = keySet.toJWKS();
  for (const k of jwks.keys) console.log(`   { kty: "${k.kty}", alg: "${k.alg}", use: "${k.use}", kid: "${k.kid}" }`);
  const fromJwks = await jwtVerify(signed, createLocalJWKSet(jwks));
  const fromResolver = await jwtVerify(signed, keySet.resolver);
  assert.equal(fromJwks.payload.sub, "user123");
  assert.equal(fromResolver.protectedHeader.kid, rsa.kid);
  console.log("   the signed JWT verifies against the JWKS (jose createLocalJWKSet) and with keySet.resolver");
  console.log("");
  console.log("Demo complete: all checks passed. The private keys never left the token.");
} finally {
  await hsm.close();
}
