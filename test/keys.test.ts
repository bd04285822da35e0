/**
 * Keys on a fresh SoftHSM2 token: finding them by label, CKA_ID and pkcs11: URI; kid and JWK
 * options; listing and deleting; importing JWK and PKCS#8 keys made by node:crypto (which then sign
 * verifiably and cannot leave the token); generating every key type.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, randomBytes } from "node:crypto";
import * as jose from "jose";
import { HsmKeySet, installShim, InvalidInputError, KeyExportError, KeyNotFoundError, type Hsm, type HsmKey } from "../src/index.js";
import { freshHsm, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, nodeVerifyCompact, rejectsWith } from "./helpers/native.js";

const enc = new TextEncoder();

let fixture: Fixture;
let hsm: Hsm;
let uninstall: () => void;
let ec: HsmKey;
const EC_ID = "0a0b0c0d0e0f";

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  uninstall = installShim();
  ec = await hsm.generateKey("ES256", { label: "keys-ec", id: EC_ID });
});

after(async () => {
  await assertNoLeftovers(hsm);
  uninstall();
  await fixture.close();
});

function persistentNonExtractable(key: HsmKey): void {
  const main = key.objects.privateKey ?? key.objects.secretKey!;
  assert.equal(main.info.flags.persistent, true, "key must be a token object");
  assert.equal(main.info.flags.extractable, false, "CKA_EXTRACTABLE must be false");
  assert.equal(main.info.flags.sensitive, true, "CKA_SENSITIVE must be true");
  const cryptoKey = key.privateKey ?? key.secretKey!;
  assert.equal(cryptoKey.extractable, false);
  assert.throws(() => key.exportPrivate(), KeyExportError);
}

async function signsVerifiably(key: HsmKey, alg: string): Promise<void> {
  const jws = await new jose.CompactSign(enc.encode("check")).setProtectedHeader({ alg }).sign(key.as(alg).privateKey!);
  assert.equal(nodeVerifyCompact(jws, key.exportPublic()), true, `${alg} signature did not verify with node:crypto`);
}

describe("finding keys", () => {
  test("by label, by id (bytes and hex, any case), by pkcs11: URI: the same key", async () => {
    const refs = [
      "keys-ec",
      { label: "keys-ec" },
      { id: EC_ID },
      { id: EC_ID.toUpperCase() },
      { id: new Uint8Array(Buffer.from(EC_ID, "hex")) },
      "pkcs11:object=keys-ec;type=private",
      "pkcs11:object=keys-ec",
      "pkcs11:id=%0a%0b%0c%0d%0e%0f",
      { uri: "pkcs11:object=keys-ec;type=private" },
    ];
    for (const ref of refs) {
      const key = await hsm.getKey(ref);
      assert.equal(key.kid, ec.kid, `ref ${JSON.stringify(ref)}`);
      assert.equal(key.label, "keys-ec");
      assert.equal(Buffer.from(key.id!).toString("hex"), EC_ID);
      assert.deepEqual(key.exportPublic(), ec.exportPublic());
      assert.equal(key.kty, "EC");
      assert.equal(key.alg, "ES256");
      await signsVerifiably(key, "ES256");
    }
  });

  test("type=public finds the lone public key: it verifies but has no private part", async () => {
    const key = await hsm.getKey("pkcs11:object=keys-ec;type=public");
    assert.equal(key.privateKey, undefined);
    assert.deepEqual(key.exportPublic().x, ec.exportPublic().x);
    const jws = await new jose.CompactSign(enc.encode("p")).setProtectedHeader({ alg: "ES256" }).sign(ec.privateKey!);
    await jose.compactVerify(jws, key.publicKey!);
  });

  test("a missing key is KeyNotFoundError naming the reference", async () => {
    for (const [ref, name] of [
      ["no-such-label", "no-such-label"],
      [{ id: "deadbeef" }, "deadbeef"],
      ["pkcs11:object=nothing-here;type=private", "nothing-here"],
    ] as const) {
      const error = await rejectsWith(hsm.getKey(ref), KeyNotFoundError, "ERR_HSM_KEY_NOT_FOUND");
      assert.match(error.message, new RegExp(name));
    }
  });
});

describe("kid and JWK options", () => {
  test("the default kid is the RFC 7638 thumbprint of the public key", async () => {
    const { kid, alg, use, key_ops, ...publicJwk } = ec.exportPublic();
    assert.equal(kid, await jose.calculateJwkThumbprint(publicJwk as jose.JWK));
    assert.equal(kid, await jose.calculateJwkThumbprint(ec.exportPublic() as jose.JWK));
    assert.equal(alg, "ES256");
    assert.equal(use, "sig");
    assert.equal(key_ops, undefined);
    assert.deepEqual(Object.keys(publicJwk).sort(), ["crv", "kty", "x", "y"]);
  });

  test("kid, use, alg and keyOps options are reflected in exportPublic", async () => {
    const key = await hsm.getKey("keys-ec", { kid: "my-kid", use: "sig", alg: "ES256", keyOps: ["verify"] });
    const jwk = key.exportPublic();
    assert.equal(key.kid, "my-kid");
    assert.equal(jwk.kid, "my-kid");
    assert.equal(jwk.use, "sig");
    assert.equal(jwk.alg, "ES256");
    assert.deepEqual(jwk.key_ops, ["verify"]);
    // and the JWK is usable by jose as is
    const jws = await new jose.CompactSign(enc.encode("k")).setProtectedHeader({ alg: "ES256", kid: "my-kid" }).sign(key.privateKey!);
    await jose.compactVerify(jws, await jose.importJWK(jwk));
  });

  test("an RSA key shaped for RSA-OAEP publishes use=enc", async () => {
    const rsa = await hsm.generateKey("RSA-OAEP", { label: "keys-rsa-enc", kid: "enc-1" });
    try {
      const jwk = rsa.exportPublic();
      assert.deepEqual([jwk.kid, jwk.alg, jwk.use, jwk.kty], ["enc-1", "RSA-OAEP", "enc", "RSA"]);
      assert.equal(rsa.as("RS256").exportPublic().use, "sig");
      for (const m of ["d", "p", "q", "dp", "dq", "qi"]) assert.equal((jwk as unknown as Record<string, unknown>)[m], undefined);
    } finally {
      await hsm.deleteKey("keys-rsa-enc");
    }
  });

  test("a secret key has no public JWK; exportPublic and exportPrivate throw KeyExportError", async () => {
    const aes = await hsm.generateKey("A128KW", { label: "keys-aes-export" });
    try {
      assert.equal(aes.kid, "keys-aes-export", "secret keys default to their label as kid");
      assert.throws(() => aes.exportPublic(), (e: unknown) => e instanceof KeyExportError && e.code === "ERR_HSM_KEY_EXPORT");
      assert.throws(() => aes.exportPrivate(), (e: unknown) => e instanceof KeyExportError && e.code === "ERR_HSM_KEY_EXPORT");
    } finally {
      await hsm.deleteKey("keys-aes-export");
    }
  });
});

describe("listKeys and deleteKey", () => {
  test("listKeys shows generated keys, deleteKey removes every object of a key", async () => {
    const before = (await hsm.stats()).objects.token;
    await hsm.generateKey("EdDSA", { label: "keys-list-ed" });
    await hsm.generateKey("HS256", { label: "keys-list-hmac" });
    assert.equal((await hsm.stats()).objects.token, before + 3, "a key pair is 2 objects, a secret key 1");
    const listed = await hsm.listKeys();
    const byLabel = new Map(listed.map((k) => [k.label, k]));
    assert.ok(byLabel.has("keys-ec"));
    assert.equal(byLabel.get("keys-list-ed")?.kty, "OKP");
    assert.equal(byLabel.get("keys-list-ed")?.alg, "EdDSA");
    assert.ok(byLabel.get("keys-list-ed")?.privateKey, "the pair is listed once, with its private key");
    assert.equal(byLabel.get("keys-list-hmac")?.kty, "oct");
    assert.equal(listed.filter((k) => k.label === "keys-list-ed").length, 1);

    assert.equal(await hsm.deleteKey("keys-list-ed"), 2);
    assert.equal(await hsm.deleteKey({ label: "keys-list-hmac" }), 1);
    assert.equal((await hsm.stats()).objects.token, before);
    await rejectsWith(hsm.getKey("keys-list-ed"), KeyNotFoundError, "ERR_HSM_KEY_NOT_FOUND");
    await rejectsWith(hsm.getKey("keys-list-hmac"), KeyNotFoundError, "ERR_HSM_KEY_NOT_FOUND");
    await rejectsWith(hsm.deleteKey("keys-list-ed"), KeyNotFoundError, "ERR_HSM_KEY_NOT_FOUND");
    assert.ok(!(await hsm.listKeys()).some((k) => k.label === "keys-list-ed" || k.label === "keys-list-hmac"));
  });
});

describe("importKey", () => {
  const cases: [string, string, () => ReturnType<typeof generateKeyPairSync>][] = [
    ["RSA", "PS256", () => generateKeyPairSync("rsa", { modulusLength: 2048 })],
    ["P-256", "ES256", () => generateKeyPairSync("ec", { namedCurve: "P-256" })],
    ["P-384", "ES384", () => generateKeyPairSync("ec", { namedCurve: "P-384" })],
    ["P-521", "ES512", () => generateKeyPairSync("ec", { namedCurve: "P-521" })],
    ["Ed25519", "EdDSA", () => generateKeyPairSync("ed25519")],
  ];
  for (const [name, alg, make] of cases) {
    for (const format of ["jwk", "pkcs8-pem"] as const) {
      test(`${name} from ${format}: same public key, signs verifiably, not extractable`, async () => {
        const { privateKey, publicKey } = make();
        const label = `keys-import-${name}-${format}`;
        const input = format === "jwk" ? (privateKey.export({ format: "jwk" }) as JsonWebKey) : (privateKey.export({ format: "pem", type: "pkcs8" }) as string);
        const key = await hsm.importKey(input, { label, alg });
        try {
          const expected = publicKey.export({ format: "jwk" }) as JsonWebKey;
          const got = key.exportPublic();
          for (const m of ["kty", "n", "e", "crv", "x", "y"] as const) assert.equal(got[m], expected[m], m);
          assert.equal(got.kid, await jose.calculateJwkThumbprint(expected as jose.JWK));
          assert.equal(key.alg, alg);
          await signsVerifiably(key, alg);
          persistentNonExtractable(key);
          // Found again later by label, with the same flags read from the token.
          persistentNonExtractable(await hsm.getKey(label));
          await rejectsWith(crypto.subtle.exportKey("jwk", key.privateKey!), DOMException);
        } finally {
          await hsm.deleteKey(label);
        }
      });
    }
  }

  test("an HMAC secret from an oct JWK: HMAC equals node:crypto's", async () => {
    const secret = randomBytes(32);
    const key = await hsm.importKey({ kty: "oct", k: secret.toString("base64url"), alg: "HS256" }, { label: "keys-import-hmac" });
    try {
      assert.equal(key.alg, "HS256");
      const jws = await new jose.CompactSign(enc.encode("mac")).setProtectedHeader({ alg: "HS256" }).sign(key.secretKey!);
      const [h, p, s] = jws.split(".");
      assert.equal(s, createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url"));
      persistentNonExtractable(key);
    } finally {
      await hsm.deleteKey("keys-import-hmac");
    }
  });
});

describe("generateKey", () => {
  const cases: [string, Record<string, unknown>, (k: HsmKey) => void][] = [
    ["RS256", { modulusLength: 3072 }, (k) => assert.equal((k.privateKey!.algorithm as RsaHashedKeyAlgorithm).modulusLength, 3072)],
    ["PS256", {}, (k) => assert.equal((k.privateKey!.algorithm as RsaHashedKeyAlgorithm).modulusLength, 2048)],
    ["ES256", {}, (k) => assert.equal(k.exportPublic().crv, "P-256")],
    ["ES384", {}, (k) => assert.equal(k.exportPublic().crv, "P-384")],
    ["ES512", {}, (k) => assert.equal(k.exportPublic().crv, "P-521")],
    ["EdDSA", {}, (k) => assert.equal(k.exportPublic().crv, "Ed25519")],
    ["A128KW", {}, (k) => assert.equal((k.secretKey!.algorithm as AesKeyAlgorithm).length, 128)],
    ["A192GCM", {}, (k) => assert.equal((k.secretKey!.algorithm as AesKeyAlgorithm).length, 192)],
    ["A256GCMKW", {}, (k) => assert.equal((k.secretKey!.algorithm as AesKeyAlgorithm).length, 256)],
    ["HS256", {}, (k) => assert.equal((k.secretKey!.algorithm as HmacKeyAlgorithm).length, 256)],
    ["HS384", {}, (k) => assert.equal((k.secretKey!.algorithm as HmacKeyAlgorithm).length, 384)],
    ["HS512", {}, (k) => assert.equal((k.secretKey!.algorithm as HmacKeyAlgorithm).length, 512)],
  ];
  for (const [alg, options, check] of cases) {
    test(`${alg} ${JSON.stringify(options)}: persistent, sensitive, non-extractable, works`, async () => {
      const label = `keys-gen-${alg}`;
      const key = await hsm.generateKey(alg, { label, ...options });
      try {
        assert.equal(key.alg, alg);
        assert.ok(key.algorithms.includes(alg as never));
        check(key);
        persistentNonExtractable(key);
        // It is a token object: a second Hsm-level lookup finds it.
        assert.equal((await hsm.getKey(label)).kid, key.kid);
        if (key.privateKey) {
          await signsVerifiably(key, alg);
        } else if (alg.startsWith("HS")) {
          const jwt = await new jose.SignJWT({ a: 1 }).setProtectedHeader({ alg }).sign(key.secretKey!);
          assert.equal((await jose.jwtVerify(jwt, key.secretKey!)).payload.a, 1);
        } else {
          const header = /^A\d+GCM$/.test(alg) ? { alg: "dir", enc: alg } : { alg, enc: "A128GCM" };
          const jwe = await new jose.CompactEncrypt(enc.encode("aes")).setProtectedHeader(header).encrypt(key.as(header.alg).secretKey!);
          assert.equal(new TextDecoder().decode((await jose.compactDecrypt(jwe, key.as(header.alg).secretKey!)).plaintext), "aes");
        }
      } finally {
        await hsm.deleteKey(label);
      }
    });
  }

  test("RSA 4096", async () => {
    const key = await hsm.generateKey("RS512", { label: "keys-gen-4096", modulusLength: 4096 });
    try {
      assert.equal((key.publicKey!.algorithm as RsaHashedKeyAlgorithm).modulusLength, 4096);
      assert.equal(Buffer.from(key.exportPublic().n!, "base64url").length, 512);
      await signsVerifiably(key, "RS512");
    } finally {
      await hsm.deleteKey("keys-gen-4096");
    }
  });

  test("a label that exists already is refused and nothing is created", async () => {
    const before = (await hsm.stats()).objects.token;
    await assert.rejects(hsm.generateKey("ES256", { label: "keys-ec" }), { code: "ERR_HSM_INVALID_INPUT" });
    await assert.rejects(hsm.generateKey("ES256", { id: EC_ID }), { code: "ERR_HSM_INVALID_INPUT" });
    assert.equal((await hsm.stats()).objects.token, before);
  });
});

describe("HsmKeySet", () => {
  test("add, get, has, size, iteration, duplicate kid, toJWKS without private members", async () => {
    await hsm.generateKey("RS256", { label: "set-rsa" });
    const aes = await hsm.generateKey("A256KW", { label: "set-aes" });
    try {
      const set = new HsmKeySet(hsm);
      const a = await set.add("set-rsa", { kid: "rsa-1" });
      const b = await set.add({ label: "keys-ec" });
      const c = await set.add(aes);
      assert.equal(set.size, 3);
      assert.equal(set.get("rsa-1"), a);
      assert.equal(set.get(ec.kid), b);
      assert.equal(set.get("set-aes"), c);
      assert.equal(set.get("nope"), undefined);
      assert.deepEqual([...set].map((k) => k.kid), ["rsa-1", ec.kid, "set-aes"]);
      const dup = await rejectsWith(set.add("set-rsa", { kid: "rsa-1" }), InvalidInputError, "ERR_HSM_DUPLICATE_KID");
      assert.match(dup.message, /rsa-1/);
      await rejectsWith(set.add("keys-ec"), InvalidInputError, "ERR_HSM_DUPLICATE_KID");
      assert.equal(set.size, 3);
      const jwks = JSON.parse(JSON.stringify(set.toJWKS())) as { keys: Record<string, unknown>[] };
      assert.deepEqual(jwks.keys.map((k) => k.kid), ["rsa-1", ec.kid], "secret keys are never published");
      for (const k of jwks.keys) for (const m of ["d", "p", "q", "dp", "dq", "qi", "k"]) assert.equal(k[m], undefined, `${m} in JWKS`);
      // The published JWKS verifies what the set's keys sign (jose's own JWKS resolver).
      const jwt = await new jose.SignJWT({ sub: "s" }).setProtectedHeader({ alg: "RS256", kid: "rsa-1" }).sign(a.privateKey!);
      assert.equal((await jose.jwtVerify(jwt, jose.createLocalJWKSet(jwks as jose.JSONWebKeySet))).payload.sub, "s");
    } finally {
      await hsm.deleteKey("set-rsa");
      await hsm.deleteKey("set-aes");
    }
  });

  test("resolver picks the key by kid for jwtVerify, compactVerify, generalVerify, jwtDecrypt, compactDecrypt", async () => {
    const sig = await hsm.generateKey("ES384", { label: "set-sig" });
    await hsm.generateKey("RSA-OAEP", { label: "set-enc" });
    const kw = await hsm.generateKey("A128KW", { label: "set-kw" });
    try {
      const set = new HsmKeySet(hsm);
      await set.add("set-sig", { kid: "sig" });
      await set.add("set-enc", { kid: "enc", alg: "RSA-OAEP" });
      await set.add("set-kw", { kid: "kw" });
      await set.add("keys-ec", { kid: "other-ec" });
      const jwt = await new jose.SignJWT({ sub: "r" }).setProtectedHeader({ alg: "ES384", kid: "sig" }).sign(sig.privateKey!);
      assert.equal((await jose.jwtVerify(jwt, set.resolver)).payload.sub, "r");
      assert.equal(new TextDecoder().decode((await jose.compactVerify(jwt, set.resolver)).payload), '{"sub":"r"}');
      const general = await new jose.GeneralSign(enc.encode("g"))
        .addSignature(sig.privateKey!).setProtectedHeader({ alg: "ES384", kid: "sig" })
        .sign();
      assert.equal(new TextDecoder().decode((await jose.generalVerify(general, set.resolver)).payload), "g");
      // A token signed by another key under the kid of a set key fails; an unknown kid is KeyNotFoundError.
      const forged = await new jose.SignJWT({ sub: "x" }).setProtectedHeader({ alg: "ES256", kid: "other-ec" }).sign(
        (await jose.generateKeyPair("ES256")).privateKey,
      );
      await assert.rejects(jose.jwtVerify(forged, set.resolver), jose.errors.JWSSignatureVerificationFailed);
      const unknown = await new jose.SignJWT({}).setProtectedHeader({ alg: "ES384", kid: "nobody" }).sign(sig.privateKey!);
      await assert.rejects(jose.jwtVerify(unknown, set.resolver), (e: unknown) => e instanceof KeyNotFoundError);

      const pub = await jose.importJWK(set.get("enc")!.exportPublic(), "RSA-OAEP");
      const ejwt = await new jose.EncryptJWT({ sub: "e" }).setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM", kid: "enc" }).encrypt(pub);
      assert.equal((await jose.jwtDecrypt(ejwt, set.resolver)).payload.sub, "e");
      const kwJwe = await new jose.CompactEncrypt(enc.encode("kw")).setProtectedHeader({ alg: "A128KW", enc: "A128GCM", kid: "kw" }).encrypt(kw.secretKey!);
      assert.equal(new TextDecoder().decode((await jose.compactDecrypt(kwJwe, set.resolver)).plaintext), "kw");
    } finally {
      for (const l of ["set-sig", "set-enc", "set-kw"]) await hsm.deleteKey(l);
    }
  });

  test("key rotation: the old kid still verifies old tokens, the new key signs new ones", async () => {
    const set = new HsmKeySet(hsm);
    const old = await hsm.generateKey("ES256", { label: "rot-1", kid: "2024-01" });
    try {
      await set.add(old);
      const oldJwt = await new jose.SignJWT({ gen: 1 }).setProtectedHeader({ alg: "ES256", kid: old.kid }).sign(old.privateKey!);
      const next = await hsm.generateKey("ES256", { label: "rot-2", kid: "2024-02" });
      await set.add(next);
      const newJwt = await new jose.SignJWT({ gen: 2 }).setProtectedHeader({ alg: "ES256", kid: next.kid }).sign(set.get("2024-02")!.privateKey!);
      assert.deepEqual(set.toJWKS().keys.map((k) => k.kid), ["2024-01", "2024-02"]);
      assert.equal((await jose.jwtVerify(oldJwt, set.resolver)).payload.gen, 1);
      assert.equal((await jose.jwtVerify(newJwt, set.resolver)).payload.gen, 2);
      assert.equal(nodeVerifyCompact(newJwt, next.exportPublic()), true);
      // Retire the old key: its tokens no longer resolve.
      assert.equal(set.delete("2024-01"), true);
      await assert.rejects(jose.jwtVerify(oldJwt, set.resolver), (e: unknown) => e instanceof KeyNotFoundError);
      assert.equal((await jose.jwtVerify(newJwt, set.resolver)).payload.gen, 2);
    } finally {
      await hsm.deleteKey("rot-1");
      await hsm.deleteKey("rot-2").catch(() => 0);
    }
  });
});

test("ensureKey returns the labelled key when the token has it, and generates it (once) when not", async () => {
  const before = (await hsm.stats()).objects.token;
  const made = await hsm.ensureKey("ES384", { label: "ensure-me" });
  assert.equal((await hsm.stats()).objects.token, before + 2);
  const again = await hsm.ensureKey("ES384", { label: "ensure-me" });
  assert.equal((await hsm.stats()).objects.token, before + 2, "a second key was generated");
  assert.equal(again.kid, made.kid);
  assert.deepEqual(again.exportPublic(), made.exportPublic());
  // An existing key of another type is not silently replaced: the algorithm must fit it.
  await assert.rejects(hsm.ensureKey("RS256", { label: "ensure-me" }), (e: unknown) => (e as { code?: string }).code === "ERR_HSM_UNSUPPORTED_ALGORITHM");
  assert.equal(await hsm.deleteKey("ensure-me"), 2);
});
