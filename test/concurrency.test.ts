/**
 * Concurrency on a fresh SoftHSM2 token: 1,000 ES256 and 200 RS256 signs in one Promise.all, with
 * no error (no CKR_OPERATION_ACTIVE), every signature verified by node:crypto, and afterwards no
 * busy session and no session object.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as jose from "jose";
import { installShim, type Hsm, type HsmKey } from "../src/index.js";
import { freshHsm, leftovers, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, nodeVerifyCompact } from "./helpers/native.js";

let fixture: Fixture;
let hsm: Hsm;
let uninstall: () => void;
let ec: HsmKey;
let rsa: HsmKey;

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  uninstall = installShim();
  ec = await hsm.generateKey("ES256", { label: "conc-ec" });
  rsa = await hsm.generateKey("RS256", { label: "conc-rsa" });
});

after(async () => {
  await assertNoLeftovers(hsm);
  uninstall();
  await fixture.close();
});

async function signMany(key: HsmKey, alg: string, count: number): Promise<string[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      new jose.SignJWT({ n: i }).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey!),
    ),
  );
}

test("1,000 concurrent ES256 signs: all succeed and verify", async () => {
  const jwts = await signMany(ec, "ES256", 1000);
  assert.equal(jwts.length, 1000);
  const publicJwk = ec.exportPublic();
  for (let i = 0; i < jwts.length; i++) {
    assert.equal(nodeVerifyCompact(jwts[i]!, publicJwk), true, `signature ${i}`);
    assert.equal(JSON.parse(Buffer.from(jwts[i]!.split(".")[1]!, "base64url").toString()).n, i, "results in order");
  }
  assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  const stats = (await hsm.stats()).sessions;
  assert.ok(stats.open <= 8, `pool grew to ${stats.open} sessions`);
  assert.equal(stats.waiting, 0);
});

test("200 concurrent RS256 signs: all succeed, equal the deterministic signature, verify", async () => {
  const jwts = await signMany(rsa, "RS256", 200);
  const publicJwk = rsa.exportPublic();
  for (const jwt of jwts) assert.equal(nodeVerifyCompact(jwt, publicJwk), true);
  // PKCS#1 v1.5 is deterministic: a sequential re-sign of the same input gives the same bytes.
  const again = await new jose.SignJWT({ n: 7 }).setProtectedHeader({ alg: "RS256", kid: rsa.kid }).sign(rsa.privateKey!);
  assert.equal(again, jwts[7]);
  assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
});

test("mixed concurrent work on one pool: HMAC sign+verify, AES-GCM dir and RSA-OAEP encrypt+decrypt", async () => {
  const hmac = await hsm.generateKey("HS256", { label: "conc-hmac" });
  const aes = await hsm.generateKey("A256GCM", { label: "conc-aes" });
  try {
    const oaep = rsa.as("RSA-OAEP");
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) {
      jobs.push(new jose.SignJWT({ i }).setProtectedHeader({ alg: "HS256" }).sign(hmac.secretKey!).then((t) => jose.jwtVerify(t, hmac.secretKey!)).then((r) => assert.equal(r.payload.i, i)));
      jobs.push(new jose.CompactEncrypt(new TextEncoder().encode(`m${i}`)).setProtectedHeader({ alg: "dir", enc: "A256GCM" }).encrypt(aes.as("dir").secretKey!)
        .then((j) => jose.compactDecrypt(j, aes.as("dir").secretKey!)).then((r) => assert.equal(new TextDecoder().decode(r.plaintext), `m${i}`)));
      if (i % 5 === 0) {
        jobs.push(new jose.CompactEncrypt(new TextEncoder().encode(`r${i}`)).setProtectedHeader({ alg: "RSA-OAEP", enc: "A128GCM" }).encrypt(oaep.publicKey!)
          .then((j) => jose.compactDecrypt(j, oaep.privateKey!)).then((r) => assert.equal(new TextDecoder().decode(r.plaintext), `r${i}`)));
      }
    }
    const results = await Promise.allSettled(jobs);
    const failed = results.filter((r) => r.status === "rejected");
    assert.equal(failed.length, 0, failed.map((f) => String((f as PromiseRejectedResult).reason)).slice(0, 3).join("; "));
    assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  } finally {
    await hsm.deleteKey("conc-hmac");
    await hsm.deleteKey("conc-aes");
  }
});
