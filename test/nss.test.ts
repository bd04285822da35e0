/**
 * NSS softoken (libsoftokn3.so) as a second real token: the jose matrix through the global shim,
 * every signature checked by node:crypto, every JWE decrypted on the token after being made by an
 * independent implementation (Node's native WebCrypto) or the other way round. NSS does what
 * SoftHSM cannot (RSA-OAEP with SHA-2, ECDSA with the hash in the token) and cannot do EdDSA.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { constants, createHmac, createPublicKey, randomBytes, verify as nodeVerify, webcrypto, type JsonWebKey as NodeJwk } from "node:crypto";
import * as jose from "jose";
import { openHsm, type Hsm } from "../src/hsm.js";
import type { HsmKey } from "../src/jose/hsm-key.js";
import { installShim } from "../src/shim/install.js";
import { HsmError, UnsupportedAlgorithmError } from "../src/errors.js";
import { CKM } from "../src/pkcs11/constants.js";
import { createNssDatabase, NSS_TOKEN_LABEL, type NssDatabase } from "./helpers/nss.js";

let db: NssDatabase;
let hsm: Hsm;
let uninstall: () => void;
let rsa: HsmKey;
const ec: Record<string, HsmKey> = {};

const HASH: Record<string, string> = { "256": "sha256", "384": "sha384", "512": "sha512" };

before(async () => {
  db = createNssDatabase();
  hsm = await openHsm(db.options);
  uninstall = installShim();
  rsa = await hsm.generateKey("RS256");
  for (const alg of ["ES256", "ES384", "ES512"]) ec[alg] = await hsm.generateKey(alg);
});

after(async () => {
  uninstall?.();
  await hsm?.close();
  db?.remove();
});

/** No session objects left on the token and no session still lent, after every test. */
async function assertClean(): Promise<void> {
  const stats = await hsm.stats();
  assert.deepEqual({ sessionObjects: stats.objects.session, busySessions: stats.sessions.busy }, { sessionObjects: 0, busySessions: 0 });
}

/** Verify a compact JWS with node:crypto and the key's exported public JWK (no WebCrypto, no jose). */
function nodeVerifies(jws: string, key: HsmKey, alg: string): boolean {
  const [h, p, s] = jws.split(".");
  const input = Buffer.from(`${h}.${p}`);
  const signature = Buffer.from(s!, "base64url");
  const publicKey = createPublicKey({ key: { ...key.exportPublic() } as NodeJwk, format: "jwk" });
  const hash = HASH[alg.slice(-3)]!;
  if (alg.startsWith("PS")) {
    return nodeVerify(hash, input, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(-3)) / 8 }, signature);
  }
  if (alg.startsWith("ES")) return nodeVerify(hash, input, { key: publicKey, dsaEncoding: "ieee-p1363" }, signature);
  return nodeVerify(hash, input, publicKey, signature);
}

test("the NSS database is a token that needs the PIN, found by its label", async () => {
  assert.equal(hsm.info.label, NSS_TOKEN_LABEL);
  assert.equal(hsm.info.manufacturer, "Mozilla Foundation");
  assert.equal(hsm.info.embedded, false);
  assert.equal(hsm.token.loginRequired, true);
  // What NSS offers and SoftHSM does not, and what it lacks.
  assert.equal(hsm.token.has(CKM.ECDSA_SHA256), true, "NSS hashes for ECDSA in the token");
  assert.equal(hsm.token.has(CKM.EDDSA), false, "NSS softoken has no EdDSA");
  assert.equal(hsm.token.has(CKM.EC_EDWARDS_KEY_PAIR_GEN), false);
});

for (const alg of ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]) {
  test(`${alg} JWT signed on NSS verifies with node:crypto and with jose`, async () => {
    const key = rsa.as(alg);
    assert.ok(key.algorithms.includes(alg as never), `${alg} missing from ${key.algorithms.join(",")}`);
    const jwt = await new jose.SignJWT({ sub: alg }).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey!);
    assert.equal(nodeVerifies(jwt, key, alg), true);
    const { payload, protectedHeader } = await jose.jwtVerify(jwt, key.publicKey!);
    assert.equal(payload.sub, alg);
    assert.equal(protectedHeader.kid, key.kid);
    // A flipped payload byte must not verify.
    const [h, , s] = jwt.split(".");
    assert.equal(nodeVerifies(`${h}.${Buffer.from('{"sub":"x"}').toString("base64url")}.${s}`, key, alg), false);
    await assertClean();
  });
}

for (const alg of ["ES256", "ES384", "ES512"]) {
  test(`${alg} JWT signed on NSS (CKM_ECDSA_SHA* in the token) verifies with node:crypto`, async () => {
    const key = ec[alg]!;
    assert.equal(key.alg, alg);
    const jwt = await new jose.SignJWT({ sub: alg }).setProtectedHeader({ alg }).sign(key.privateKey!);
    const size = { ES256: 64, ES384: 96, ES512: 132 }[alg];
    assert.equal(Buffer.from(jwt.split(".")[2]!, "base64url").length, size, "r||s of the curve size");
    assert.equal(nodeVerifies(jwt, key, alg), true);
    assert.equal((await jose.jwtVerify(jwt, key.publicKey!)).payload.sub, alg);
    // ECDSA is randomised: two signatures differ, both verify.
    const again = await new jose.SignJWT({ sub: alg }).setProtectedHeader({ alg }).sign(key.privateKey!);
    assert.notEqual(again.split(".")[2], jwt.split(".")[2]);
    assert.equal(nodeVerifies(again, key, alg), true);
    await assertClean();
  });
}

for (const alg of ["HS256", "HS384", "HS512"]) {
  test(`${alg}: a key generated on NSS (CKM_GENERIC_SECRET_KEY_GEN) signs and verifies; an imported one matches node:crypto HMAC`, async () => {
    const generated = await hsm.generateKey(alg);
    assert.equal(generated.kty, "oct");
    const jwt = await new jose.SignJWT({ sub: alg }).setProtectedHeader({ alg }).sign(generated.secretKey!);
    assert.equal((await jose.jwtVerify(jwt, generated.secretKey!)).payload.sub, alg);
    const [h, p] = jwt.split(".");
    await assert.rejects(jose.jwtVerify(`${h}.${p}.${Buffer.alloc(Number(alg.slice(2)) / 8).toString("base64url")}`, generated.secretKey!), {
      code: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
    });

    // Known key bytes: the token's MAC must equal node:crypto's, byte for byte.
    const secret = randomBytes(Number(alg.slice(2)) / 8);
    const imported = await hsm.importKey({ kty: "oct", k: secret.toString("base64url") }, { alg });
    const jws = await new jose.CompactSign(Buffer.from("payload")).setProtectedHeader({ alg }).sign(imported.secretKey!);
    const [hh, pp, ss] = jws.split(".");
    const expected = createHmac(HASH[alg.slice(2)]!, secret).update(`${hh}.${pp}`).digest("base64url");
    assert.equal(ss, expected);
    await hsm.deleteKey({ id: imported.id! });
    await hsm.deleteKey({ id: generated.id! });
    await assertClean();
  });
}

for (const alg of ["RSA-OAEP", "RSA-OAEP-256", "RSA-OAEP-384", "RSA-OAEP-512"]) {
  test(`${alg} JWE made by native WebCrypto decrypts on NSS (OAEP ${alg === "RSA-OAEP" ? "SHA-1" : "SHA-2"} in the token)`, async () => {
    const key = rsa.as(alg);
    assert.ok(key.algorithms.includes(alg as never), `${alg} missing from ${key.algorithms.join(",")}`);
    const plaintext = randomBytes(100);
    // Encrypt with an ordinary public CryptoKey imported from the exported JWK: nothing of hsmkey involved.
    const nativePublic = await jose.importJWK({ ...key.exportPublic(), alg }, alg);
    const jwe = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc: "A256GCM" }).encrypt(nativePublic);
    const { plaintext: out, protectedHeader } = await jose.compactDecrypt(jwe, key.privateKey!);
    assert.equal(protectedHeader.alg, alg);
    assert.deepEqual(Buffer.from(out), plaintext);
    // A tampered encrypted key is refused.
    const parts = jwe.split(".");
    const ek = Buffer.from(parts[1]!, "base64url");
    ek[ek.length - 1]! ^= 1;
    parts[1] = ek.toString("base64url");
    await assert.rejects(jose.compactDecrypt(parts.join("."), key.privateKey!), { code: "ERR_JWE_DECRYPTION_FAILED" });
    await assertClean();
  });
}

for (const [alg, curve, crv] of [
  ["ECDH-ES", "ES256", "P-256"],
  ["ECDH-ES+A128KW", "ES256", "P-256"],
  ["ECDH-ES+A192KW", "ES384", "P-384"],
  ["ECDH-ES+A256KW", "ES512", "P-521"],
] as const) {
  test(`${alg} JWE to a ${crv} key: native ephemeral key, token derives`, async () => {
    const key = ec[curve]!.as(alg);
    assert.equal(key.exportPublic().crv, crv);
    const plaintext = randomBytes(64);
    const jwe = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc: "A128GCM" }).encrypt(key.publicKey ?? (await jose.importJWK({ ...key.exportPublic(), alg }, alg)));
    const { plaintext: out } = await jose.compactDecrypt(jwe, key.privateKey!);
    assert.deepEqual(Buffer.from(out), plaintext);
    await assertClean();
  });
}

for (const alg of ["A128KW", "A192KW", "A256KW", "A128GCMKW", "A192GCMKW", "A256GCMKW"]) {
  test(`${alg}: JWE wrapped on NSS decrypts with a native key of the same bytes, and back`, async () => {
    const secret = randomBytes(Number(alg.slice(1, 4)) / 8);
    const key = await hsm.importKey({ kty: "oct", k: secret.toString("base64url") }, { alg });
    const native = await jose.importJWK({ kty: "oct", k: secret.toString("base64url") }, alg);
    const plaintext = randomBytes(50);
    const onToken = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc: "A256GCM" }).encrypt(key.secretKey!);
    assert.deepEqual(Buffer.from((await jose.compactDecrypt(onToken, native)).plaintext), plaintext);
    const offToken = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg, enc: "A128GCM" }).encrypt(native);
    assert.deepEqual(Buffer.from((await jose.compactDecrypt(offToken, key.secretKey!)).plaintext), plaintext);
    await hsm.deleteKey({ id: key.id! });
    await assertClean();
  });
}

test("dir + A256GCM: content encrypted on NSS with a generated key decrypts there; with known bytes it matches native AES-GCM", async () => {
  const generated = await hsm.generateKey("A256GCM");
  const plaintext = randomBytes(1000);
  const jwe = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: "dir", enc: "A256GCM" }).encrypt(generated.secretKey!);
  assert.deepEqual(Buffer.from((await jose.compactDecrypt(jwe, generated.secretKey!)).plaintext), plaintext);

  const secret = randomBytes(32);
  const key = await hsm.importKey({ kty: "oct", k: secret.toString("base64url") }, { alg: "A256GCM" });
  const native = await jose.importJWK({ kty: "oct", k: secret.toString("base64url") }, "A256GCM");
  const onToken = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: "dir", enc: "A256GCM" }).encrypt(key.secretKey!);
  assert.deepEqual(Buffer.from((await jose.compactDecrypt(onToken, native)).plaintext), plaintext);
  const offToken = await new jose.CompactEncrypt(plaintext).setProtectedHeader({ alg: "dir", enc: "A256GCM" }).encrypt(native);
  assert.deepEqual(Buffer.from((await jose.compactDecrypt(offToken, key.secretKey!)).plaintext), plaintext);
  await hsm.deleteKey({ id: key.id! });
  await hsm.deleteKey({ id: generated.id! });
  await assertClean();
});

test("EdDSA on NSS: generateKey fails with a typed error and leaves nothing behind", async () => {
  const before = (await hsm.stats()).objects;
  const error = await hsm.generateKey("EdDSA").then(
    () => assert.fail("NSS generated an Ed25519 key"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof HsmError, `not an HsmError: ${String(error)}`);
  assert.match(error.message, /Ed25519/);
  assert.match(error.message, /NSS Certificate DB/);
  assert.deepEqual((await hsm.stats()).objects, before);
  await assertClean();
});

test("EdDSA on NSS is reported as an unsupported algorithm (UnsupportedAlgorithmError, ERR_HSM_UNSUPPORTED_ALGORITHM)", async () => {
  const before = (await hsm.stats()).objects;
  await assert.rejects(hsm.generateKey("EdDSA"), (e: unknown) => {
    assert.ok(e instanceof UnsupportedAlgorithmError, `got ${(e as Error).constructor.name} ${(e as HsmError).code}`);
    assert.equal(e.code, "ERR_HSM_UNSUPPORTED_ALGORITHM");
    return true;
  });
  assert.deepEqual((await hsm.stats()).objects, before);
});

test("an Ed25519 private JWK cannot be imported into NSS, and nothing is left behind", async () => {
  const pair = (await webcrypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const jwk = await webcrypto.subtle.exportKey("jwk", pair.privateKey);
  const before = (await hsm.stats()).objects;
  await assert.rejects(hsm.importKey(jwk as JsonWebKey), (e: unknown) => e instanceof HsmError);
  assert.deepEqual((await hsm.stats()).objects, before);
  await assertClean();
});

test("the live capability probe on NSS: everything but EdDSA, RSA-OAEP with SHA-2 included; nothing left behind", async () => {
  const { probeAlgorithms } = await import("../src/jose/probe.js");
  const before = (await hsm.stats()).objects;
  const results = await probeAlgorithms(hsm.token);
  assert.deepEqual(results.filter((r) => !r.supported).map((r) => r.alg), ["EdDSA"]);
  assert.match(results.find((r) => r.alg === "EdDSA")!.reason!, /CKM_EC_EDWARDS_KEY_PAIR_GEN/);
  for (const alg of ["RSA-OAEP-256", "RSA-OAEP-384", "RSA-OAEP-512", "ES512", "ECDH-ES+A256KW", "A256KW", "A256GCMKW", "dir", "HS512"]) {
    assert.equal(results.find((r) => r.alg === alg)?.supported, true, alg);
  }
  assert.deepEqual((await hsm.stats()).objects, before);
});
