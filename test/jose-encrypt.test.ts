/**
 * jose encryption through the shim, against a fresh SoftHSM2 token. The encrypting side is native
 * (node:crypto by hand, or jose with a key imported without hsmkey) and the token decrypts; where
 * the key is symmetric and was imported with a known value, the token encrypts and node decrypts too.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createSecretKey, generateKeyPairSync, randomBytes } from "node:crypto";
import * as jose from "jose";
import { installShim, openHsm, UnsupportedAlgorithmError, type Hsm, type HsmKey } from "../src/index.js";
import { acceptsOaepHash } from "../src/pkcs11/oaep-hashes.js";
import { freshHsm, leftovers, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, tamperSegment } from "./helpers/native.js";
import { destroySessionObjects } from "./helpers/session-keys.js";
import { nodeDecryptDir, nodeDecryptRsaOaep, nodeEncryptDir, nodeEncryptRsaOaep } from "./helpers/native-jwe.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const CONTENT = ["A128GCM", "A192GCM", "A256GCM", "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512"];

let fixture: Fixture;
let hsm: Hsm;
let uninstall: () => void;
let rsa: HsmKey;
let rsaOther: HsmKey;

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  uninstall = installShim();
  rsa = await hsm.generateKey("RSA-OAEP", { label: "enc-rsa" });
  rsaOther = await hsm.generateKey("RSA-OAEP", { label: "enc-rsa-other" });
});

after(async () => {
  await assertNoLeftovers(hsm);
  uninstall();
  await fixture.close();
});

describe("RSA-OAEP: native encrypts to the HSM public key, the token decrypts", () => {
  for (const contentEnc of CONTENT) {
    test(`RSA-OAEP + ${contentEnc}`, async () => {
      assert.equal(rsa.alg, "RSA-OAEP");
      const message = `secret for ${contentEnc}`;
      // 1. node:crypto only, from the exported public JWK.
      const handmade = nodeEncryptRsaOaep(rsa.exportPublic(), contentEnc, enc.encode(message), { kid: rsa.kid });
      const a = await jose.compactDecrypt(handmade, rsa.privateKey!);
      assert.equal(dec.decode(a.plaintext), message);
      assert.equal(a.protectedHeader.kid, rsa.kid);
      // 2. jose with a public key imported from the JWK by jose itself (native CryptoKey).
      const nativePublic = await jose.importJWK(rsa.exportPublic(), "RSA-OAEP");
      const jwe = await new jose.CompactEncrypt(enc.encode(message)).setProtectedHeader({ alg: "RSA-OAEP", enc: contentEnc }).encrypt(nativePublic);
      const b = await jose.compactDecrypt(jwe, rsa.privateKey!);
      assert.equal(dec.decode(b.plaintext), message);
      // Tampered ciphertext, tag, encrypted key; and the wrong key.
      await assert.rejects(jose.compactDecrypt(tamperSegment(jwe, 3), rsa.privateKey!), jose.errors.JWEDecryptionFailed);
      await assert.rejects(jose.compactDecrypt(tamperSegment(jwe, 4), rsa.privateKey!), jose.errors.JWEDecryptionFailed);
      await assert.rejects(jose.compactDecrypt(tamperSegment(jwe, 1), rsa.privateKey!), jose.errors.JWEDecryptionFailed);
      await assert.rejects(jose.compactDecrypt(jwe, rsaOther.privateKey!), jose.errors.JWEDecryptionFailed);
    });
  }

  test("an imported RSA key: jose encrypts with the HsmKey's public key, node decrypts with the original private key", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const key = await hsm.importKey(privateKey.export({ format: "pem", type: "pkcs8" }) as string, { label: "enc-rsa-imported", alg: "RSA-OAEP" });
    try {
      const jwe = await new jose.CompactEncrypt(enc.encode("both ways")).setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM" }).encrypt(key.publicKey!);
      assert.equal(nodeDecryptRsaOaep(jwe, privateKey).toString(), "both ways");
      const handmade = nodeEncryptRsaOaep(privateKey.export({ format: "jwk" }) as JsonWebKey, "A128CBC-HS256", enc.encode("to the token"));
      assert.equal(dec.decode((await jose.compactDecrypt(handmade, key.privateKey!)).plaintext), "to the token");
    } finally {
      await hsm.deleteKey({ label: "enc-rsa-imported" });
    }
  });

  test("the token is asked which OAEP hashes it accepts (SoftHSM: SHA-1 only), once, leaving no session object", async () => {
    // A second Hsm on the same token: a new Token, so nothing is cached yet.
    const second = await openHsm({ home: fixture.home });
    try {
      const answers = (["SHA-1", "SHA-256", "SHA-384", "SHA-512"] as const).map((hash) => acceptsOaepHash(second.token, hash));
      assert.deepEqual(answers, [true, false, false, false]);
      assert.deepEqual(await leftovers(second), { sessionObjects: 0, busySessions: 0 });
      // The keys of that token agree.
      const key = await second.getKey("enc-rsa", { alg: "RSA-OAEP" });
      assert.deepEqual(key.algorithms.filter((a) => a.startsWith("RSA-OAEP")), ["RSA-OAEP"]);
    } finally {
      await second.close();
    }
  });

  test("RSA-OAEP-256 on SoftHSM: refused with UnsupportedAlgorithmError naming the algorithm", () => {
    assert.ok(!rsa.algorithms.includes("RSA-OAEP-256"), "SoftHSM cannot do OAEP with SHA-256, yet the key claims it");
    assert.throws(
      () => rsa.as("RSA-OAEP-256"),
      (error: unknown) => {
        assert.ok(error instanceof UnsupportedAlgorithmError);
        assert.equal(error.code, "ERR_HSM_UNSUPPORTED_ALGORITHM");
        assert.equal(error.name, "UnsupportedAlgorithmError");
        assert.match(error.message, /RSA-OAEP-256/);
        return true;
      },
    );
  });

  test("RSA-OAEP-256 at the WebCrypto level: NotSupportedError naming the token and the mechanism", async () => {
    const pair = (await hsm.crypto.subtle.generateKey(
      { name: "RSA-OAEP", hash: "SHA-256", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
      false,
      ["encrypt", "decrypt"],
    )) as CryptoKeyPair;
    const ciphertext = await crypto.subtle.encrypt({ name: "RSA-OAEP" }, pair.publicKey, new Uint8Array(16));
    await assert.rejects(hsm.crypto.subtle.decrypt({ name: "RSA-OAEP" }, pair.privateKey, ciphertext), (error: unknown) => {
      assert.ok(error instanceof DOMException);
      assert.equal(error.name, "NotSupportedError");
      assert.match(error.message, /hsmkey-dev/);
      assert.match(error.message, /OAEP/);
      return true;
    });
    // The same through the global shim (what jose calls).
    await assert.rejects(crypto.subtle.decrypt({ name: "RSA-OAEP" }, pair.privateKey, ciphertext), { name: "NotSupportedError" });
    // The session key pair (private + public object) is the only thing this test left on the token.
    assert.equal(await destroySessionObjects(hsm), 2);
  });
});

describe("ECDH-ES with HSM EC keys", () => {
  for (const curve of ["P-256", "P-384", "P-521"] as const) {
    test(`${curve}: ECDH-ES, ECDH-ES+A128KW/A192KW/A256KW`, async () => {
      const key = await hsm.generateKey("ECDH-ES", { label: `enc-ecdh-${curve}`, curve });
      const other = await hsm.generateKey("ECDH-ES", { label: `enc-ecdh-other-${curve}`, curve });
      try {
        assert.equal(key.alg, "ECDH-ES");
        assert.equal(key.exportPublic().crv, curve);
        for (const alg of ["ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW"]) {
          assert.ok(key.algorithms.includes(alg as never), `${alg} missing from ${key.algorithms.join(",")}`);
          const shaped = key.as(alg);
          const nativePublic = await jose.importJWK(key.exportPublic(), alg);
          for (const contentEnc of ["A256GCM", "A128CBC-HS256"]) {
            const message = `${curve} ${alg} ${contentEnc}`;
            const jwe = await new jose.CompactEncrypt(enc.encode(message)).setProtectedHeader({ alg, enc: contentEnc, kid: key.kid }).encrypt(nativePublic);
            const { plaintext, protectedHeader } = await jose.compactDecrypt(jwe, shaped.privateKey!);
            assert.equal(dec.decode(plaintext), message);
            assert.equal((protectedHeader.epk as { crv: string }).crv, curve);
            await assert.rejects(jose.compactDecrypt(tamperSegment(jwe, 3), shaped.privateKey!), jose.errors.JWEDecryptionFailed);
            await assert.rejects(jose.compactDecrypt(jwe, other.as(alg).privateKey!), jose.errors.JWEDecryptionFailed);
          }
        }
      } finally {
        await hsm.deleteKey({ label: `enc-ecdh-${curve}` });
        await hsm.deleteKey({ label: `enc-ecdh-other-${curve}` });
      }
    });
  }
});

describe("AES key wrapping with HSM AES keys", () => {
  for (const alg of ["A128KW", "A192KW", "A256KW", "A128GCMKW", "A192GCMKW", "A256GCMKW"]) {
    test(`${alg}: generated key round-trips; tampering and a wrong key fail`, async () => {
      const key = await hsm.generateKey(alg, { label: `enc-${alg}` });
      const other = await hsm.generateKey(alg, { label: `enc-${alg}-other` });
      try {
        assert.equal(key.alg, alg);
        assert.equal(key.kty, "oct");
        for (const contentEnc of ["A128GCM", "A256GCM", "A256CBC-HS512"]) {
          const jwe = await new jose.CompactEncrypt(enc.encode(`${alg}/${contentEnc}`)).setProtectedHeader({ alg, enc: contentEnc }).encrypt(key.secretKey!);
          const { plaintext } = await jose.compactDecrypt(jwe, key.secretKey!);
          assert.equal(dec.decode(plaintext), `${alg}/${contentEnc}`);
          await assert.rejects(jose.compactDecrypt(tamperSegment(jwe, 3), key.secretKey!), jose.errors.JWEDecryptionFailed);
          await assert.rejects(jose.compactDecrypt(tamperSegment(jwe, 1), key.secretKey!), jose.errors.JWEDecryptionFailed);
          await assert.rejects(jose.compactDecrypt(jwe, other.secretKey!), jose.errors.JWEDecryptionFailed);
        }
      } finally {
        await hsm.deleteKey({ label: `enc-${alg}` });
        await hsm.deleteKey({ label: `enc-${alg}-other` });
      }
    });

    test(`${alg}: imported key, native jose encrypts and the token decrypts, and the reverse`, async () => {
      const bits = Number(alg.slice(1, 4));
      const raw = randomBytes(bits / 8);
      const label = `enc-${alg}-imported`;
      const key = await hsm.importKey({ kty: "oct", k: raw.toString("base64url") }, { label, alg });
      const native = createSecretKey(raw);
      try {
        const fromNative = await new jose.CompactEncrypt(enc.encode("native->hsm")).setProtectedHeader({ alg, enc: "A192CBC-HS384" }).encrypt(native);
        assert.equal(dec.decode((await jose.compactDecrypt(fromNative, key.secretKey!)).plaintext), "native->hsm");
        const fromHsm = await new jose.CompactEncrypt(enc.encode("hsm->native")).setProtectedHeader({ alg, enc: "A192GCM" }).encrypt(key.secretKey!);
        assert.equal(dec.decode((await jose.compactDecrypt(fromHsm, native)).plaintext), "hsm->native");
      } finally {
        await hsm.deleteKey({ label });
      }
    });
  }
});

describe("dir with an HSM AES-GCM key", () => {
  test("generated A256GCM key: key.as('dir') and key.secretKey both work", async () => {
    const key = await hsm.generateKey("A256GCM", { label: "enc-dir" });
    const other = await hsm.generateKey("A256GCM", { label: "enc-dir-other" });
    try {
      assert.ok(key.algorithms.includes("dir"));
      for (const cryptoKey of [key.as("dir").secretKey!, key.secretKey!]) {
        const jwe = await new jose.CompactEncrypt(enc.encode("direct")).setProtectedHeader({ alg: "dir", enc: "A256GCM" }).encrypt(cryptoKey);
        assert.equal(jwe.split(".")[1], "", "dir has an empty encrypted key");
        assert.equal(dec.decode((await jose.compactDecrypt(jwe, cryptoKey)).plaintext), "direct");
        await assert.rejects(jose.compactDecrypt(tamperSegment(jwe, 3), cryptoKey), jose.errors.JWEDecryptionFailed);
        await assert.rejects(jose.compactDecrypt(tamperSegment(jwe, 4), cryptoKey), jose.errors.JWEDecryptionFailed);
        await assert.rejects(jose.compactDecrypt(jwe, other.secretKey!), jose.errors.JWEDecryptionFailed);
      }
    } finally {
      await hsm.deleteKey({ label: "enc-dir" });
      await hsm.deleteKey({ label: "enc-dir-other" });
    }
  });

  for (const contentEnc of ["A128GCM", "A192GCM", "A256GCM"]) {
    test(`dir + ${contentEnc} with an imported key: node:crypto encrypts, the token decrypts, and the reverse`, async () => {
      const raw = randomBytes(Number(contentEnc.slice(1, 4)) / 8);
      const label = `enc-dir-${contentEnc}`;
      const key = await hsm.importKey({ kty: "oct", k: raw.toString("base64url") }, { label, alg: contentEnc });
      try {
        const dirKey = key.as("dir").secretKey!;
        const handmade = nodeEncryptDir(raw, contentEnc, enc.encode("node->hsm"));
        assert.equal(dec.decode((await jose.compactDecrypt(handmade, dirKey)).plaintext), "node->hsm");
        const fromHsm = await new jose.CompactEncrypt(enc.encode("hsm->node")).setProtectedHeader({ alg: "dir", enc: contentEnc }).encrypt(dirKey);
        assert.equal(nodeDecryptDir(fromHsm, raw).toString(), "hsm->node");
      } finally {
        await hsm.deleteKey({ label });
      }
    });
  }
});

describe("JWE serialisations", () => {
  test("flattened JSON with AAD and unprotected header", async () => {
    const nativePublic = await jose.importJWK(rsa.exportPublic(), "RSA-OAEP");
    const jwe = await new jose.FlattenedEncrypt(enc.encode("flattened"))
      .setProtectedHeader({ enc: "A128GCM" })
      .setSharedUnprotectedHeader({ alg: "RSA-OAEP", kid: rsa.kid })
      .setAdditionalAuthenticatedData(enc.encode("aad"))
      .encrypt(nativePublic);
    const { plaintext, additionalAuthenticatedData } = await jose.flattenedDecrypt(jwe, rsa.privateKey!);
    assert.equal(dec.decode(plaintext), "flattened");
    assert.equal(dec.decode(additionalAuthenticatedData!), "aad");
    await assert.rejects(jose.flattenedDecrypt({ ...jwe, aad: Buffer.from("AAD").toString("base64url") }, rsa.privateKey!), jose.errors.JWEDecryptionFailed);
  });

  test("general JSON with two recipients (RSA-OAEP and A256KW): each decrypts with its HSM key", async () => {
    const aes = await hsm.generateKey("A256KW", { label: "enc-general-aes" });
    try {
      const nativePublic = await jose.importJWK(rsa.exportPublic(), "RSA-OAEP");
      const jwe = await new jose.GeneralEncrypt(enc.encode("two recipients"))
        .setProtectedHeader({ enc: "A256GCM" })
        .addRecipient(nativePublic).setUnprotectedHeader({ alg: "RSA-OAEP", kid: "rsa" })
        .addRecipient(aes.secretKey!).setUnprotectedHeader({ alg: "A256KW", kid: "aes" })
        .encrypt();
      assert.equal(jwe.recipients.length, 2);
      for (const key of [rsa.privateKey!, aes.secretKey!]) {
        const { plaintext } = await jose.generalDecrypt(jwe, key);
        assert.equal(dec.decode(plaintext), "two recipients");
      }
      await assert.rejects(jose.generalDecrypt(jwe, rsaOther.privateKey!), jose.errors.JWEDecryptionFailed);
    } finally {
      await hsm.deleteKey({ label: "enc-general-aes" });
    }
  });
});
