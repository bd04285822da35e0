/**
 * jose signing through the shim, against a fresh SoftHSM2 token: every JWS algorithm of the issue,
 * checked by node:crypto (not by the code under test), in both directions where that applies,
 * with tampered tokens and wrong keys; compact, flattened and general serialisations; several
 * signatures on one JWS; signed, encrypted and nested JWTs.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, createSecretKey, generateKeyPairSync, randomBytes } from "node:crypto";
import * as jose from "jose";
import { installShim, type Hsm, type HsmKey } from "../src/index.js";
import { freshHsm, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, nodeSignCompact, nodeVerifyCompact, nodeVerifyHmacCompact, tamperSegment } from "./helpers/native.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

let fixture: Fixture;
let hsm: Hsm;
let uninstall: () => void;
let rsa: HsmKey;
let rsaOther: HsmKey;
const ec: Record<string, HsmKey> = {};
let ed: HsmKey;
const hmacGenerated: Record<string, HsmKey> = {};
let hmacOther: HsmKey;

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  uninstall = installShim();
  rsa = await hsm.generateKey("RS256", { label: "sign-rsa" });
  rsaOther = await hsm.generateKey("RS256", { label: "sign-rsa-other" });
  for (const alg of ["ES256", "ES384", "ES512"]) ec[alg] = await hsm.generateKey(alg, { label: `sign-${alg}` });
  ed = await hsm.generateKey("EdDSA", { label: "sign-ed25519" });
  for (const alg of ["HS256", "HS384", "HS512"]) hmacGenerated[alg] = await hsm.generateKey(alg, { label: `sign-${alg}` });
  hmacOther = await hsm.generateKey("HS512", { label: "sign-hmac-other" });
});

after(async () => {
  await assertNoLeftovers(hsm);
  uninstall();
  await fixture.close();
});

function asymmetricKey(alg: string): HsmKey {
  if (alg.startsWith("RS") || alg.startsWith("PS")) return rsa.as(alg);
  if (alg.startsWith("ES")) return ec[alg]!;
  return ed;
}

/** A public key that did not make the signature (another HSM RSA key, or a native EC/Ed25519 key). */
function wrongKey(alg: string): CryptoKey {
  if (alg.startsWith("RS") || alg.startsWith("PS")) return rsaOther.as(alg).publicKey!;
  if (alg === "EdDSA") return wrongEd!;
  return wrongEcKeys[{ ES256: "P-256", ES384: "P-384", ES512: "P-521" }[alg]!]!;
}

const wrongEcKeys: Record<string, CryptoKey> = {};
let wrongEd: CryptoKey | undefined;
before(async () => {
  for (const curve of ["P-256", "P-384", "P-521"]) {
    const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"])) as CryptoKeyPair;
    wrongEcKeys[curve] = pair.publicKey;
  }
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  wrongEd = pair.publicKey;
});

describe("asymmetric JWS: the HSM signs, node:crypto verifies", () => {
  for (const alg of ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]) {
    test(alg, async () => {
      const key = asymmetricKey(alg);
      assert.ok(key.algorithms.includes(alg as never), `${alg} missing from key.algorithms ${key.algorithms.join(",")}`);
      const jws = await new jose.CompactSign(enc.encode(`payload for ${alg}`))
        .setProtectedHeader({ alg, kid: key.kid })
        .sign(key.privateKey!);
      // Independent implementation: node:crypto with the exported public JWK.
      assert.equal(nodeVerifyCompact(jws, key.exportPublic()), true, "node:crypto rejected the HSM signature");
      // jose with the public CryptoKey as well.
      const { payload, protectedHeader } = await jose.compactVerify(jws, key.publicKey!);
      assert.equal(dec.decode(payload), `payload for ${alg}`);
      assert.deepEqual(protectedHeader, { alg, kid: key.kid });
      // Tampered signature and tampered payload fail, with jose's error class.
      await assert.rejects(jose.compactVerify(tamperSegment(jws, 2), key.publicKey!), jose.errors.JWSSignatureVerificationFailed);
      await assert.rejects(jose.compactVerify(tamperSegment(jws, 1), key.publicKey!), jose.errors.JWSSignatureVerificationFailed);
      assert.equal(nodeVerifyCompact(tamperSegment(jws, 2), key.exportPublic()), false);
      // The wrong key fails.
      await assert.rejects(jose.compactVerify(jws, wrongKey(alg)), jose.errors.JWSSignatureVerificationFailed);
    });
  }

  test("signatures of non-deterministic algorithms differ each time but both verify", async () => {
    const key = ec.ES256!;
    const a = await new jose.CompactSign(enc.encode("x")).setProtectedHeader({ alg: "ES256" }).sign(key.privateKey!);
    const b = await new jose.CompactSign(enc.encode("x")).setProtectedHeader({ alg: "ES256" }).sign(key.privateKey!);
    assert.notEqual(a, b);
    assert.equal(nodeVerifyCompact(a, key.exportPublic()), true);
    assert.equal(nodeVerifyCompact(b, key.exportPublic()), true);
  });

  test("RS256 is deterministic: the HSM signature equals node:crypto's with the same (imported) key", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const imported = await hsm.importKey(privateKey.export({ format: "jwk" }) as JsonWebKey, { label: "sign-rsa-imported", alg: "RS256" });
    try {
      const hsmJws = await new jose.CompactSign(enc.encode('{"sub":"u"}')).setProtectedHeader({ alg: "RS256" }).sign(imported.privateKey!);
      const nativeJws = nodeSignCompact("RS256", { sub: "u" }, privateKey);
      assert.equal(hsmJws, nativeJws);
    } finally {
      await hsm.deleteKey({ label: "sign-rsa-imported" });
    }
  });
});

describe("asymmetric JWS: node:crypto signs with a key imported into the HSM, the HsmKey verifies", () => {
  const cases: [string, () => ReturnType<typeof generateKeyPairSync>][] = [
    ["RS256", () => generateKeyPairSync("rsa", { modulusLength: 2048 })],
    ["PS384", () => generateKeyPairSync("rsa", { modulusLength: 2048 })],
    ["ES256", () => generateKeyPairSync("ec", { namedCurve: "P-256" })],
    ["ES384", () => generateKeyPairSync("ec", { namedCurve: "P-384" })],
    ["ES512", () => generateKeyPairSync("ec", { namedCurve: "P-521" })],
    ["EdDSA", () => generateKeyPairSync("ed25519")],
  ];
  for (const [alg, make] of cases) {
    test(alg, async () => {
      const { privateKey } = make();
      const label = `sign-import-${alg}`;
      const key = await hsm.importKey(privateKey.export({ format: "jwk" }) as JsonWebKey, { label, alg });
      try {
        const nativeJwt = nodeSignCompact(alg, { sub: "native", iat: 1 }, privateKey, { kid: key.kid });
        const { payload } = await jose.jwtVerify(nativeJwt, key.publicKey!);
        assert.equal(payload.sub, "native");
        await assert.rejects(jose.jwtVerify(tamperSegment(nativeJwt, 2), key.publicKey!), jose.errors.JWSSignatureVerificationFailed);
        // And the other way: the HSM signs with the imported key, node verifies with the original key's public half.
        const hsmJwt = await new jose.SignJWT({ sub: "hsm" }).setProtectedHeader({ alg }).sign(key.privateKey!);
        const spki = createPrivateKey(privateKey.export({ format: "pem", type: "pkcs8" })).export({ format: "jwk" });
        assert.equal(nodeVerifyCompact(hsmJwt, spki as JsonWebKey), true);
      } finally {
        await hsm.deleteKey({ label });
      }
    });
  }
});

describe("HMAC JWS with HSM secret keys", () => {
  for (const alg of ["HS256", "HS384", "HS512"]) {
    test(`${alg}: imported secret, HSM signs = node HMAC, node signs and the HSM verifies`, async () => {
      const secret = randomBytes(Number(alg.slice(2)) / 8);
      const label = `hmac-import-${alg}`;
      const key = await hsm.importKey({ kty: "oct", k: secret.toString("base64url") }, { label, alg });
      try {
        assert.equal(key.kty, "oct");
        assert.equal(key.publicKey, undefined);
        const hsmJws = await new jose.CompactSign(enc.encode("hmac payload")).setProtectedHeader({ alg }).sign(key.secretKey!);
        assert.equal(nodeVerifyHmacCompact(hsmJws, secret), true, "HSM HMAC differs from node:crypto's");
        const nativeJwt = nodeSignCompact(alg, { sub: "from-node" }, secret);
        const { payload } = await jose.jwtVerify(nativeJwt, key.secretKey!);
        assert.equal(payload.sub, "from-node");
        // Also verifiable by jose with a natively imported copy of the secret.
        await jose.compactVerify(hsmJws, createSecretKey(secret));
        await assert.rejects(jose.jwtVerify(tamperSegment(nativeJwt, 2), key.secretKey!), jose.errors.JWSSignatureVerificationFailed);
        await assert.rejects(jose.compactVerify(hsmJws, hmacGenerated[alg]!.secretKey!), jose.errors.JWSSignatureVerificationFailed);
      } finally {
        await hsm.deleteKey({ label });
      }
    });

    test(`${alg}: generated secret signs and verifies in the token; tampering and a wrong key fail`, async () => {
      const key = hmacGenerated[alg]!;
      assert.equal(key.alg, alg);
      const jwt = await new jose.SignJWT({ sub: alg }).setProtectedHeader({ alg, kid: key.kid }).sign(key.secretKey!);
      const { payload, protectedHeader } = await jose.jwtVerify(jwt, key.secretKey!);
      assert.equal(payload.sub, alg);
      assert.equal(protectedHeader.alg, alg);
      await assert.rejects(jose.jwtVerify(tamperSegment(jwt, 2), key.secretKey!), jose.errors.JWSSignatureVerificationFailed);
      await assert.rejects(jose.jwtVerify(tamperSegment(jwt, 1), key.secretKey!), jose.errors.JWSSignatureVerificationFailed);
      const other = hmacOther.as(alg); // a 512-bit secret fits HS256/384/512
      await assert.rejects(jose.jwtVerify(jwt, other.secretKey!), jose.errors.JWSSignatureVerificationFailed);
    });
  }
});

describe("serialisations", () => {
  test("flattened JSON: HSM signs, node verifies, unprotected header kept", async () => {
    const key = ec.ES384!;
    const jws = await new jose.FlattenedSign(enc.encode("flat"))
      .setProtectedHeader({ alg: "ES384" })
      .setUnprotectedHeader({ kid: key.kid })
      .sign(key.privateKey!);
    assert.equal(jws.header?.kid, key.kid);
    assert.equal(nodeVerifyCompact(`${jws.protected}.${jws.payload}.${jws.signature}`, key.exportPublic()), true);
    const { payload } = await jose.flattenedVerify(jws, key.publicKey!);
    assert.equal(dec.decode(payload), "flat");
    await assert.rejects(
      jose.flattenedVerify({ ...jws, payload: Buffer.from("flat!").toString("base64url") }, key.publicKey!),
      jose.errors.JWSSignatureVerificationFailed,
    );
  });

  test("general JSON with several signatures (RSA, EC, Ed25519, HMAC): each verifies on its own", async () => {
    const payload = enc.encode("signed by four keys");
    const hmac = hmacGenerated.HS256!;
    const jws = await new jose.GeneralSign(payload)
      .addSignature(rsa.as("PS256").privateKey!).setProtectedHeader({ alg: "PS256", kid: "rsa" })
      .addSignature(ec.ES256!.privateKey!).setProtectedHeader({ alg: "ES256" }).setUnprotectedHeader({ kid: "ec" })
      .addSignature(ed.privateKey!).setProtectedHeader({ alg: "EdDSA", kid: "ed" })
      .addSignature(hmac.secretKey!).setProtectedHeader({ alg: "HS256", kid: "hmac" })
      .sign();
    assert.equal(jws.signatures.length, 4);
    const publics = [rsa.as("PS256").exportPublic(), ec.ES256!.exportPublic(), ed.exportPublic()];
    for (let i = 0; i < 3; i++) {
      const s = jws.signatures[i]!;
      assert.equal(nodeVerifyCompact(`${s.protected}.${jws.payload}.${s.signature}`, publics[i]!), true, `signature ${i}`);
    }
    // generalVerify picks the first signature the key verifies.
    for (const key of [rsa.as("PS256").publicKey!, ec.ES256!.publicKey!, ed.publicKey!, hmac.secretKey!]) {
      const result = await jose.generalVerify(jws, key);
      assert.equal(dec.decode(result.payload), "signed by four keys");
    }
    await assert.rejects(jose.generalVerify(jws, rsaOther.as("PS256").publicKey!), jose.errors.JWSSignatureVerificationFailed);
    const tampered = { ...jws, payload: Buffer.from("signed by five keys").toString("base64url") };
    await assert.rejects(jose.generalVerify(tampered, ec.ES256!.publicKey!), jose.errors.JWSSignatureVerificationFailed);
  });

  test("general JSON with RSA + EC in parallel signing: both signatures verify with node:crypto", async () => {
    const jws = await new jose.GeneralSign(enc.encode("pair"))
      .addSignature(rsa.privateKey!).setProtectedHeader({ alg: "RS256" })
      .addSignature(ec.ES512!.privateKey!).setProtectedHeader({ alg: "ES512" })
      .sign();
    const [a, b] = jws.signatures;
    assert.equal(nodeVerifyCompact(`${a!.protected}.${jws.payload}.${a!.signature}`, rsa.exportPublic()), true);
    assert.equal(nodeVerifyCompact(`${b!.protected}.${jws.payload}.${b!.signature}`, ec.ES512!.exportPublic()), true);
  });
});

describe("JWTs", () => {
  test("signed JWT with claims: HSM signs, node verifies, jose validates the claims", async () => {
    const key = rsa.as("PS512");
    const jwt = await new jose.SignJWT({ sub: "user123", scope: "read" })
      .setProtectedHeader({ alg: "PS512", kid: key.kid, typ: "JWT" })
      .setIssuer("https://issuer.example").setAudience("api").setIssuedAt().setExpirationTime("5m")
      .sign(key.privateKey!);
    assert.equal(nodeVerifyCompact(jwt, key.exportPublic()), true);
    const { payload } = await jose.jwtVerify(jwt, key.publicKey!, { issuer: "https://issuer.example", audience: "api" });
    assert.equal(payload.sub, "user123");
    await assert.rejects(jose.jwtVerify(jwt, key.publicKey!, { audience: "other" }), jose.errors.JWTClaimValidationFailed);
    const expired = await new jose.SignJWT({ sub: "old" }).setProtectedHeader({ alg: "PS512" }).setExpirationTime(1).sign(key.privateKey!);
    await assert.rejects(jose.jwtVerify(expired, key.publicKey!), jose.errors.JWTExpired);
  });

  test("encrypted JWT: encrypted natively to the HSM RSA public key, decrypted in the token", async () => {
    const oaep = rsa.as("RSA-OAEP");
    const jwe = await new jose.EncryptJWT({ secret: "claims" })
      .setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM", kid: oaep.kid })
      .setIssuedAt()
      .encrypt(oaep.publicKey!);
    const { payload, protectedHeader } = await jose.jwtDecrypt(jwe, oaep.privateKey!);
    assert.equal(payload.secret, "claims");
    assert.equal(protectedHeader.enc, "A256GCM");
    await assert.rejects(jose.jwtDecrypt(jwe, rsaOther.as("RSA-OAEP").privateKey!), jose.errors.JWEDecryptionFailed);
  });

  test("nested JWT: signed in the HSM (ES256), then encrypted to the HSM RSA key; unwrap and verify", async () => {
    const signer = ec.ES256!;
    const oaep = rsa.as("RSA-OAEP");
    const inner = await new jose.SignJWT({ sub: "nested" }).setProtectedHeader({ alg: "ES256", kid: signer.kid }).sign(signer.privateKey!);
    const outer = await new jose.CompactEncrypt(enc.encode(inner))
      .setProtectedHeader({ alg: "RSA-OAEP", enc: "A128CBC-HS256", cty: "JWT" })
      .encrypt(oaep.publicKey!);
    const { plaintext, protectedHeader } = await jose.compactDecrypt(outer, oaep.privateKey!);
    assert.equal(protectedHeader.cty, "JWT");
    const innerJwt = dec.decode(plaintext);
    assert.equal(innerJwt, inner);
    assert.equal(nodeVerifyCompact(innerJwt, signer.exportPublic()), true);
    const { payload } = await jose.jwtVerify(innerJwt, signer.publicKey!);
    assert.equal(payload.sub, "nested");
  });
});
