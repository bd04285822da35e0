/**
 * `hsm.crypto`: a WebCrypto Crypto whose SubtleCrypto runs on a fresh SoftHSM2 token, used
 * directly (no shim). Results are checked against Node's native WebCrypto / node:crypto.
 * Session keys made here live until the Hsm closes; each test destroys what it made and checks
 * how many objects that was.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import { isHsmCryptoKey, type Hsm, type HsmKey } from "../src/index.js";
import { freshHsm, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers } from "./helpers/native.js";
import { destroySessionObjects } from "./helpers/session-keys.js";

const native = webcrypto.subtle;
const data = new TextEncoder().encode("data to protect");

let fixture: Fixture;
let hsm: Hsm;
let subtle: SubtleCrypto;
let pin: string;

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  subtle = hsm.crypto.subtle as unknown as SubtleCrypto;
  pin = readFileSync(join(fixture.home, "user.pin"), "utf8").split("\n")[0]!;
});

after(async () => {
  await assertNoLeftovers(hsm);
  await fixture.close();
});

async function sessionObjects(): Promise<number> {
  return (await hsm.stats()).objects.session;
}

/** Run fn; afterwards exactly `expected` session objects are new; destroy them. */
async function withSessionKeys(expected: number, fn: () => Promise<void>): Promise<void> {
  const start = await sessionObjects();
  assert.equal(start, 0);
  try {
    await fn();
    assert.equal(await sessionObjects(), expected, "session objects made by this test");
  } finally {
    await destroySessionObjects(hsm);
  }
}

async function exportPublic(key: CryptoKey): Promise<CryptoKey> {
  // The public half of a token key pair is an ordinary CryptoKey: re-import it into native WebCrypto.
  const jwk = await subtle.exportKey("jwk", key);
  return native.importKey("jwk", jwk, key.algorithm as never, true, key.usages as KeyUsage[]);
}

describe("sign / verify with session keys", () => {
  const cases: [string, RsaHashedKeyGenParams | EcKeyGenParams | HmacKeyGenParams | Algorithm, Algorithm | RsaPssParams | EcdsaParams][] = [
    ["RSASSA-PKCS1-v1_5 SHA-256", { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) } as RsaHashedKeyGenParams, { name: "RSASSA-PKCS1-v1_5" }],
    ["RSA-PSS SHA-384", { name: "RSA-PSS", hash: "SHA-384", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) } as RsaHashedKeyGenParams, { name: "RSA-PSS", saltLength: 48 } as RsaPssParams],
    ["ECDSA P-256", { name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" } as EcdsaParams],
    ["ECDSA P-384", { name: "ECDSA", namedCurve: "P-384" }, { name: "ECDSA", hash: "SHA-384" } as EcdsaParams],
    ["ECDSA P-521", { name: "ECDSA", namedCurve: "P-521" }, { name: "ECDSA", hash: "SHA-512" } as EcdsaParams],
    ["Ed25519", { name: "Ed25519" }, { name: "Ed25519" }],
  ];
  for (const [name, gen, params] of cases) {
    test(`${name}: the token signs, native WebCrypto verifies; the token's verify agrees`, async () => {
      await withSessionKeys(2, async () => {
        const pair = (await subtle.generateKey(gen, false, ["sign", "verify"])) as CryptoKeyPair;
        assert.ok(isHsmCryptoKey(pair.privateKey));
        assert.equal(pair.privateKey.extractable, false);
        assert.equal(pair.privateKey.type, "private");
        assert.deepEqual([...pair.privateKey.usages], ["sign"]);
        assert.equal(pair.publicKey.type, "public");
        const signature = await subtle.sign(params, pair.privateKey, data);
        const nativePublic = await exportPublic(pair.publicKey);
        assert.equal(await native.verify(params, nativePublic, signature, data), true, "native verify");
        assert.equal(await subtle.verify(params, pair.publicKey, signature, data), true);
        const tampered = new Uint8Array(signature);
        tampered[5]! ^= 1;
        assert.equal(await native.verify(params, nativePublic, tampered, data), false);
        assert.equal(await subtle.verify(params, pair.publicKey, tampered, data), false);
      });
    });
  }

  for (const hash of ["SHA-256", "SHA-384", "SHA-512"]) {
    test(`HMAC ${hash}: imported secret signs like native HMAC; token verify agrees`, async () => {
      await withSessionKeys(2, async () => {
        const raw = webcrypto.getRandomValues(new Uint8Array(64));
        const key = await subtle.importKey("raw", raw, { name: "HMAC", hash }, false, ["sign", "verify"]);
        assert.ok(isHsmCryptoKey(key));
        assert.deepEqual(key.algorithm, { name: "HMAC", hash: { name: hash }, length: 512 });
        const nativeKey = await native.importKey("raw", raw, { name: "HMAC", hash }, false, ["sign", "verify"]);
        const mac = await subtle.sign("HMAC", key, data);
        assert.deepEqual(Buffer.from(mac), Buffer.from(await native.sign("HMAC", nativeKey, data)));
        assert.equal(await subtle.verify("HMAC", key, mac, data), true);
        assert.equal(await subtle.verify("HMAC", key, mac, new Uint8Array([1, 2, 3])), false);
        // A generated HMAC key works as well.
        const generated = (await subtle.generateKey({ name: "HMAC", hash }, false, ["sign", "verify"])) as CryptoKey;
        assert.equal(await subtle.verify("HMAC", generated, await subtle.sign("HMAC", generated, data), data), true);
      });
    });
  }
});

describe("encrypt / decrypt", () => {
  test("RSA-OAEP (SHA-1): native encrypts, the token decrypts", async () => {
    await withSessionKeys(2, async () => {
      const pair = (await subtle.generateKey(
        { name: "RSA-OAEP", hash: "SHA-1", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
        false,
        ["encrypt", "decrypt"],
      )) as CryptoKeyPair;
      const nativePublic = await exportPublic(pair.publicKey);
      const params = { name: "RSA-OAEP" };
      const ciphertext = await native.encrypt(params, nativePublic, data);
      assert.deepEqual(Buffer.from(await subtle.decrypt(params, pair.privateKey, ciphertext)), Buffer.from(data));
      const bad = new Uint8Array(ciphertext);
      bad[10]! ^= 1;
      await assert.rejects(subtle.decrypt(params, pair.privateKey, bad), { name: "OperationError" });
      // SoftHSM 2.6 ignores OAEP labels: a labelled ciphertext cannot be decrypted there (a DOMException, not a crash).
      const labelled = await native.encrypt({ name: "RSA-OAEP", label: new Uint8Array([9, 9]) }, nativePublic, data);
      await assert.rejects(subtle.decrypt({ name: "RSA-OAEP", label: new Uint8Array([9, 9]) }, pair.privateKey, labelled), (e: unknown) => e instanceof DOMException);
    });
  });

  for (const length of [128, 192, 256]) {
    test(`AES-GCM ${length}: token and native agree both ways, with AAD and tag lengths`, async () => {
      await withSessionKeys(1, async () => {
        const raw = webcrypto.getRandomValues(new Uint8Array(length / 8));
        const key = await subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
        assert.deepEqual(key.algorithm, { name: "AES-GCM", length });
        const nativeKey = await native.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
        const iv = webcrypto.getRandomValues(new Uint8Array(12));
        const params = { name: "AES-GCM", iv, additionalData: new Uint8Array([1, 2]), tagLength: 128 };
        const fromToken = await subtle.encrypt(params, key, data);
        assert.deepEqual(Buffer.from(fromToken), Buffer.from(await native.encrypt(params, nativeKey, data)), "same key+IV: same bytes");
        const fromNative = await native.encrypt({ ...params, iv: new Uint8Array(12) }, nativeKey, data);
        assert.deepEqual(Buffer.from(await subtle.decrypt({ ...params, iv: new Uint8Array(12) }, key, fromNative)), Buffer.from(data));
        const bad = new Uint8Array(fromToken);
        bad[0]! ^= 1;
        await assert.rejects(subtle.decrypt(params, key, bad), { name: "OperationError" });
        await assert.rejects(subtle.decrypt({ ...params, additionalData: new Uint8Array([1]) }, key, fromToken), { name: "OperationError" });
      });
    });
  }
});

describe("deriveBits (ECDH)", () => {
  for (const [curve, bits] of [["P-256", 256], ["P-384", 384], ["P-521", 528]] as const) {
    test(`${curve}: the token and native ECDH derive the same bits, and the derived object is destroyed`, async () => {
      await withSessionKeys(2, async () => {
        const hsmPair = (await subtle.generateKey({ name: "ECDH", namedCurve: curve }, false, ["deriveBits"])) as CryptoKeyPair;
        const nativePair = (await native.generateKey({ name: "ECDH", namedCurve: curve }, true, ["deriveBits"])) as CryptoKeyPair;
        const hsmPublicNative = await exportPublic(hsmPair.publicKey);
        const tokenSide = await subtle.deriveBits({ name: "ECDH", public: nativePair.publicKey }, hsmPair.privateKey, bits);
        const nativeSide = await native.deriveBits({ name: "ECDH", public: hsmPublicNative }, nativePair.privateKey, bits);
        assert.equal(tokenSide.byteLength, bits / 8);
        assert.deepEqual(Buffer.from(tokenSide), Buffer.from(nativeSide));
        // Shorter outputs are a prefix.
        const short = await subtle.deriveBits({ name: "ECDH", public: nativePair.publicKey }, hsmPair.privateKey, 128);
        assert.deepEqual(Buffer.from(short), Buffer.from(nativeSide).subarray(0, 16));
      });
    });
  }
});

describe("wrapKey / unwrapKey (AES-KW)", () => {
  for (const length of [128, 256]) {
    test(`AES-KW ${length}: wrap a native AES key with a token key, unwrap, same raw bytes; equals native AES-KW`, async () => {
      await withSessionKeys(3, async () => {
        const kekRaw = webcrypto.getRandomValues(new Uint8Array(length / 8));
        const kek = await subtle.importKey("raw", kekRaw, "AES-KW", false, ["wrapKey", "unwrapKey"]);
        const generatedKek = (await subtle.generateKey({ name: "AES-KW", length }, false, ["wrapKey", "unwrapKey"])) as CryptoKey;
        const nativeKek = await native.importKey("raw", kekRaw, "AES-KW", false, ["wrapKey", "unwrapKey"]);
        const secret = await native.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt", "decrypt"]);
        const secretRaw = Buffer.from(await native.exportKey("raw", secret));

        const wrapped = await subtle.wrapKey("raw", secret, kek, "AES-KW");
        assert.equal(wrapped.byteLength, 40);
        assert.deepEqual(Buffer.from(wrapped), Buffer.from(await native.wrapKey("raw", secret, nativeKek, "AES-KW")), "AES-KW is deterministic");

        // Round trip through the generated key (its value cannot be exported). hsm.crypto.subtle
        // unwraps into the token, as a non-extractable session key: prove it holds the same bytes by
        // encrypting with it and decrypting natively with the original key.
        const wrapped2 = await subtle.wrapKey("raw", secret, generatedKek, "AES-KW");
        assert.notDeepEqual(Buffer.from(wrapped2), Buffer.from(wrapped), "two different KEKs");
        const unwrapped = await subtle.unwrapKey("raw", wrapped2, generatedKek, "AES-KW", "AES-GCM", false, ["encrypt", "decrypt"]);
        assert.ok(isHsmCryptoKey(unwrapped));
        assert.deepEqual(unwrapped.algorithm, { name: "AES-GCM", length: 256 });
        const iv = new Uint8Array(12).fill(7);
        const sealed = await subtle.encrypt({ name: "AES-GCM", iv }, unwrapped, data);
        assert.deepEqual(Buffer.from(await native.decrypt({ name: "AES-GCM", iv }, secret, sealed)), Buffer.from(data));
        assert.equal(secretRaw.length, 32);

        const bad = new Uint8Array(wrapped);
        bad[3]! ^= 1;
        await assert.rejects(subtle.unwrapKey("raw", bad, kek, "AES-KW", "AES-GCM", true, ["encrypt"]), (e: unknown) => e instanceof DOMException);
      });
    });
  }

  test("wrapping a token key is refused: it is not extractable", async () => {
    await withSessionKeys(2, async () => {
      const kek = (await subtle.generateKey({ name: "AES-KW", length: 128 }, false, ["wrapKey", "unwrapKey"])) as CryptoKey;
      const inner = (await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["encrypt"])) as CryptoKey;
      await assert.rejects(subtle.wrapKey("raw", inner, kek, "AES-KW"), { name: "InvalidAccessError" });
    });
  });
});

describe("digest and random", () => {
  test("digest equals node:crypto createHash for SHA-1/256/384/512", async () => {
    const input = new Uint8Array(100_000).map((_, i) => i * 7);
    for (const [algorithm, nodeName] of [["SHA-1", "sha1"], ["SHA-256", "sha256"], ["SHA-384", "sha384"], ["SHA-512", "sha512"]]) {
      const d = await subtle.digest(algorithm!, input);
      assert.equal(Buffer.from(d).toString("hex"), createHash(nodeName!).update(input).digest("hex"), algorithm);
      assert.equal(Buffer.from(await subtle.digest({ name: algorithm! }, new Uint8Array())).toString("hex"), createHash(nodeName!).digest("hex"));
    }
  });

  test("getRandomValues fills in place and returns the array; randomUUID is a v4 UUID", () => {
    const a = new Uint8Array(64);
    assert.equal(hsm.crypto.getRandomValues(a), a);
    assert.ok(a.some((b) => b !== 0));
    const b = hsm.crypto.getRandomValues(new Uint32Array(16));
    assert.notDeepEqual([...b], new Array(16).fill(0));
    assert.notDeepEqual(Buffer.from(hsm.crypto.getRandomValues(new Uint8Array(32))), Buffer.from(hsm.crypto.getRandomValues(new Uint8Array(32))));
    assert.throws(() => hsm.crypto.getRandomValues(new Uint8Array(65537)), { name: "QuotaExceededError" });
    assert.throws(() => hsm.crypto.getRandomValues(new Float64Array(2) as never), { name: "TypeMismatchError" });
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const id = hsm.crypto.randomUUID();
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      ids.add(id);
    }
    assert.equal(ids.size, 50);
  });
});

describe("HSM-backed CryptoKeys", () => {
  let rsa: HsmKey;
  let ec: HsmKey;
  let ed: HsmKey;
  let hmac: HsmKey;
  let aes: HsmKey;
  before(async () => {
    rsa = await hsm.generateKey("PS384", { label: "wc-rsa" });
    ec = await hsm.generateKey("ES512", { label: "wc-ec" });
    ed = await hsm.generateKey("EdDSA", { label: "wc-ed" });
    hmac = await hsm.generateKey("HS384", { label: "wc-hmac" });
    aes = await hsm.generateKey("A192KW", { label: "wc-aes" });
  });
  after(async () => {
    for (const l of ["wc-rsa", "wc-ec", "wc-ed", "wc-hmac", "wc-aes"]) await hsm.deleteKey(l);
  });

  test("exportKey of an HSM private or secret key rejects with InvalidAccessError, in every format", async () => {
    for (const [key, formats] of [
      [rsa.privateKey!, ["jwk", "pkcs8"]],
      [ec.privateKey!, ["jwk", "pkcs8"]],
      [ed.privateKey!, ["jwk", "pkcs8", "raw"]],
      [hmac.secretKey!, ["jwk", "raw"]],
      [aes.secretKey!, ["jwk", "raw"]],
    ] as const) {
      for (const format of formats) {
        await assert.rejects(subtle.exportKey(format, key), (e: unknown) => e instanceof DOMException && e.name === "InvalidAccessError");
      }
    }
    // The public half exports, and equals exportPublic().
    const jwk = await subtle.exportKey("jwk", rsa.publicKey!);
    assert.equal(jwk.n, rsa.exportPublic().n);
  });

  test("instanceof CryptoKey, [object CryptoKey], non-extractable, frozen", async () => {
    const nativeKey = (await native.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"])) as CryptoKey;
    const nativeCryptoKeyClass = nativeKey.constructor as typeof CryptoKey;
    assert.equal(nativeCryptoKeyClass, CryptoKey);
    for (const key of [rsa.privateKey!, ec.privateKey!, ed.privateKey!, hmac.secretKey!, aes.secretKey!]) {
      assert.ok(key instanceof CryptoKey);
      assert.ok(key instanceof nativeCryptoKeyClass, "instanceof the class of Node's own CryptoKeys");
      assert.equal(Object.prototype.toString.call(key), "[object CryptoKey]");
      assert.equal(key.extractable, false);
      assert.ok(Object.isFrozen(key.algorithm));
      assert.ok(Object.isFrozen(key.usages));
      assert.throws(() => {
        (key as { extractable: boolean }).extractable = true;
      }, TypeError);
    }
  });

  test("algorithm shapes follow the WebCrypto spec", () => {
    const r = rsa.privateKey!.algorithm as RsaHashedKeyAlgorithm;
    assert.equal(r.name, "RSA-PSS");
    assert.equal(r.modulusLength, 2048);
    assert.deepEqual([...r.publicExponent], [1, 0, 1]);
    assert.deepEqual(r.hash, { name: "SHA-384" });
    assert.deepEqual(rsa.privateKey!.usages, ["sign"]);
    assert.deepEqual(rsa.as("RSA-OAEP").privateKey!.algorithm, { name: "RSA-OAEP", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: { name: "SHA-1" } });
    // The public half is shaped the same way as the private one.
    assert.deepEqual(rsa.publicKey!.algorithm, rsa.privateKey!.algorithm);
    assert.deepEqual(ec.privateKey!.algorithm, { name: "ECDSA", namedCurve: "P-521" });
    assert.deepEqual(ed.privateKey!.algorithm, { name: "Ed25519" });
    assert.deepEqual(hmac.secretKey!.algorithm, { name: "HMAC", hash: { name: "SHA-384" }, length: 384 });
    assert.deepEqual(aes.secretKey!.algorithm, { name: "AES-KW", length: 192 });
    assert.deepEqual([...aes.secretKey!.usages].sort(), ["unwrapKey", "wrapKey"]);
    assert.deepEqual(aes.as("A192GCMKW").secretKey!.algorithm, { name: "AES-GCM", length: 192 });
  });

  test("util.inspect of keys, HsmKeys and the Hsm works and contains no PIN", () => {
    const texts = [
      inspect(rsa.privateKey), inspect(ec.privateKey), inspect(hmac.secretKey), inspect(aes.secretKey),
      inspect(rsa), inspect(hmac), inspect(hsm), inspect(hsm.crypto), inspect(hsm.crypto.subtle), inspect({ deep: { rsa, hsm } }, { depth: 10 }),
      JSON.stringify(rsa.privateKey), JSON.stringify(rsa), JSON.stringify(hsm), String(hsm), inspect(hsm.info),
    ];
    for (const t of texts) assert.ok(!t.includes(pin), `PIN in: ${t.slice(0, 200)}`);
    assert.match(inspect(rsa.privateKey), /CryptoKey/);
    assert.match(inspect(rsa.privateKey), /RSA-PSS/);
    assert.match(inspect(rsa.privateKey), /wc-rsa/);
    assert.match(inspect(hsm), /hsmkey-dev/);
    assert.equal(JSON.parse(JSON.stringify(hmac.secretKey)).extractable, false);
  });
});
