/**
 * 10,000 mixed operations at once over an Hsm whose pool (maxSessions: 4) is far smaller than the
 * concurrency: ES256 and RS256 JWT signing and RSA-OAEP JWE decryption through jose and the global
 * shim, ECDH derivation, AES key wrap/unwrap and HMAC through hsm.crypto.subtle. No operation may
 * fail, and every result is checked by an independent implementation (node:crypto); afterwards no
 * session is still lent, no session object is left, and the token holds the same objects.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createHmac, randomBytes, webcrypto } from "node:crypto";
import * as jose from "jose";
import { installShim, type Hsm, type HsmKey } from "../src/index.js";
import { freshHsm, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, nodeVerifyCompact } from "./helpers/native.js";
import { nodeEncryptRsaOaep } from "./helpers/native-jwe.js";

const native = webcrypto.subtle;
let fixture: Fixture;
let hsm: Hsm;
let uninstall: () => void;
let ec: HsmKey;
let rsa: HsmKey;
let ecdh: HsmKey;
let kw: HsmKey;
let hs: HsmKey;
const kwSecret = randomBytes(32);
const hsSecret = randomBytes(32);

before(async () => {
  fixture = await freshHsm({ maxSessions: 4 });
  hsm = fixture.hsm;
  uninstall = installShim();
  ec = await hsm.generateKey("ES256", { label: "load-ec" });
  rsa = await hsm.generateKey("RS256", { label: "load-rsa" });
  ecdh = await hsm.generateKey("ECDH-ES", { label: "load-ecdh" });
  kw = await hsm.importKey({ kty: "oct", k: kwSecret.toString("base64url") }, { alg: "A256KW", label: "load-kw" });
  hs = await hsm.importKey({ kty: "oct", k: hsSecret.toString("base64url") }, { alg: "HS256", label: "load-hs" });
});

after(async () => {
  uninstall?.();
  await fixture?.close();
});

/** RFC 3394 AES key wrap by node:crypto (OpenSSL), the reference for the token's C_WrapKey. */
function nodeWrap(kek: Buffer, key: Buffer): Buffer {
  const cipher = createCipheriv("id-aes256-wrap", kek, Buffer.from("A6A6A6A6A6A6A6A6", "hex"));
  return Buffer.concat([cipher.update(key), cipher.final()]);
}

test("10,000 mixed operations over a pool of 4 sessions: no error, every result correct, nothing left behind", async () => {
  const tokenObjects = (await hsm.stats()).objects.token;
  const ecJwk = ec.exportPublic();
  const rsaJwk = rsa.exportPublic();
  const oaep = rsa.as("RSA-OAEP");
  const ecdhPublic = await native.importKey("jwk", { ...ecdh.exportPublic(), alg: undefined, use: undefined, key_ops: undefined }, { name: "ECDH", namedCurve: "P-256" }, false, []);
  const peers = await Promise.all(Array.from({ length: 8 }, () => native.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]) as Promise<CryptoKeyPair>));
  const subtle = hsm.crypto.subtle;

  const counts = { ES256: 5000, RS256: 500, "RSA-OAEP": 800, ECDH: 1200, A256KW: 1000, HS256: 1500 };
  assert.equal(Object.values(counts).reduce((a, b) => a + b, 0), 10_000);
  const kinds = Object.entries(counts).flatMap(([kind, n]) => Array.from({ length: n }, () => kind));
  // Interleave deterministically so every kind competes with every other for the 4 sessions.
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1);
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }

  const done: Record<string, number> = {};
  const started = performance.now();
  const results = await Promise.allSettled(
    kinds.map(async (kind, i) => {
      switch (kind) {
        case "ES256": {
          const jwt = await new jose.SignJWT({ i }).setProtectedHeader({ alg: "ES256" }).sign(ec.privateKey!);
          assert.equal(nodeVerifyCompact(jwt, ecJwk), true, `ES256 ${i}`);
          break;
        }
        case "RS256": {
          const jwt = await new jose.SignJWT({ i }).setProtectedHeader({ alg: "RS256" }).sign(rsa.privateKey!);
          assert.equal(nodeVerifyCompact(jwt, rsaJwk), true, `RS256 ${i}`);
          break;
        }
        case "RSA-OAEP": {
          const plaintext = Buffer.from(`oaep ${i}`);
          const jwe = nodeEncryptRsaOaep(rsaJwk, "A128GCM", plaintext);
          assert.deepEqual(Buffer.from((await jose.compactDecrypt(jwe, oaep.privateKey!)).plaintext), plaintext);
          break;
        }
        case "ECDH": {
          const peer = peers[i % peers.length]!;
          const ours = Buffer.from(await subtle.deriveBits({ name: "ECDH", public: peer.publicKey }, ecdh.privateKey!, 256));
          const theirs = Buffer.from(await native.deriveBits({ name: "ECDH", public: ecdhPublic }, peer.privateKey, 256));
          assert.deepEqual(ours, theirs, `ECDH ${i}`);
          break;
        }
        case "A256KW": {
          const raw = randomBytes(32);
          const cek = await native.importKey("raw", raw, "AES-GCM", true, ["encrypt"]);
          const wrapped = Buffer.from(await subtle.wrapKey("raw", cek, kw.secretKey!, "AES-KW"));
          assert.deepEqual(wrapped, nodeWrap(kwSecret, raw), `wrap ${i}`);
          const back = await subtle.unwrapKey("raw", wrapped, kw.secretKey!, "AES-KW", "AES-GCM", true, ["encrypt"]);
          assert.deepEqual(Buffer.from(await native.exportKey("raw", back)), raw, `unwrap ${i}`);
          break;
        }
        case "HS256": {
          const data = Buffer.from(`hmac ${i}`);
          const mac = Buffer.from(await subtle.sign("HMAC", hs.secretKey!, data));
          assert.deepEqual(mac, createHmac("sha256", hsSecret).update(data).digest(), `HMAC ${i}`);
          break;
        }
      }
      done[kind] = (done[kind] ?? 0) + 1;
    }),
  );
  const elapsed = performance.now() - started;
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  assert.deepEqual(
    failures.slice(0, 5).map((f) => `${(f.reason as Error).name}: ${(f.reason as Error).message}`),
    [],
    `${failures.length} of 10,000 operations failed`,
  );
  assert.deepEqual(done, counts);
  assert.ok(elapsed < 30_000, `took ${Math.round(elapsed)} ms`);

  const stats = await hsm.stats();
  assert.ok(stats.sessions.open <= 4 + 1, `pool of 4 (+ the anchor) grew to ${stats.sessions.open}`);
  assert.equal(stats.sessions.waiting, 0);
  await assertNoLeftovers(hsm);
  assert.equal(stats.objects.token, tokenObjects, "token object count unchanged");
});
