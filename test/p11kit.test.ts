/**
 * A remote token: SoftHSM2 exported over a Unix socket by `p11-kit server` and reached through
 * `p11-kit-client.so`, the way a library meets a network HSM. What survives the p11-kit 0.24 RPC
 * protocol works through jose and the global shim (checked by node:crypto); what the protocol drops
 * is reported unsupported by the live probe and by typed errors, never a crash; and a server that
 * dies mid-run gives a typed error, not a crash or a hang.
 *
 * Measured here (p11-kit 0.24.1): the client offers 36 of SoftHSM's mechanisms. Gone: EdDSA and
 * Edwards keygen, ECDH, AES (GCM/CBC/CTR/key wrap) and the CKM_SHA*_RSA_PKCS_PSS family. Raw
 * CKM_RSA_PKCS_PSS survives, and hsmkey hashes in JS for it, so PS256/384/512 WORK remotely.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import * as jose from "jose";
import {
  HsmError,
  installShim,
  JOSE_ALGORITHMS,
  openHsm,
  probeAlgorithms,
  SessionError,
  UnsupportedAlgorithmError,
  type Hsm,
  type HsmKey,
} from "../src/index.js";
import { CKM } from "../src/pkcs11/constants.js";
import { startP11KitToken, type P11KitToken } from "./helpers/p11kit.js";
import { assertNoLeftovers, nodePublicKey, nodeVerifyCompact, nodeVerifyHmacCompact, rejectsWith } from "./helpers/native.js";
import { nodeEncryptRsaOaep } from "./helpers/native-jwe.js";

let remote: P11KitToken;
let hsm: Hsm;
let uninstall: () => void;
let rsa: HsmKey;
const ec: Record<string, HsmKey> = {};
let hmacSecret: Buffer;
let hmac: HsmKey;
let tokenObjects: number;

/** What the probe finds through p11-kit 0.24.1 in front of SoftHSM 2.6.1 (measured). */
const SUPPORTED = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "RSA-OAEP"];
const UNSUPPORTED = [
  "EdDSA",
  "RSA-OAEP-256",
  "RSA-OAEP-384",
  "RSA-OAEP-512",
  "ECDH-ES",
  "ECDH-ES+A128KW",
  "ECDH-ES+A192KW",
  "ECDH-ES+A256KW",
  "A128KW",
  "A192KW",
  "A256KW",
  "A128GCMKW",
  "A192GCMKW",
  "A256GCMKW",
  "dir",
];

before(async () => {
  hmacSecret = randomBytes(32);
  // Keys are made in-process on SoftHSM (the fast, direct route), then the token is exported.
  remote = await startP11KitToken(async (local) => {
    await local.generateKey("RS256", { label: "rsa" });
    for (const alg of ["ES256", "ES384", "ES512"]) await local.generateKey(alg, { label: alg.toLowerCase() });
    await local.importKey({ kty: "oct", k: hmacSecret.toString("base64url") }, { alg: "HS256", label: "hmac" });
  });
  hsm = await openHsm(remote.options);
  uninstall = installShim();
  rsa = await hsm.getKey("rsa", { alg: "RS256" });
  for (const alg of ["ES256", "ES384", "ES512"]) ec[alg] = await hsm.getKey(alg.toLowerCase(), { alg });
  hmac = await hsm.getKey("hmac", { alg: "HS256" });
  tokenObjects = (await hsm.stats()).objects.token;
});

after(async () => {
  uninstall?.();
  await hsm?.close();
  await remote?.dispose();
});

test("the token is reached through p11-kit-client.so, and the protocol's mechanism list is what was measured", () => {
  assert.match(hsm.info.module, /p11-kit-client\.so$/);
  assert.equal(hsm.info.label, remote.label);
  assert.equal(hsm.info.manufacturer, "SoftHSM project");
  assert.equal(hsm.info.embedded, false);
  assert.equal(tokenObjects, 9, "4 key pairs and 1 secret key made before the export");
  const has = (m: number) => hsm.token.has(m);
  // Survive the 0.24 protocol:
  for (const m of [CKM.RSA_PKCS, CKM.RSA_PKCS_PSS, CKM.RSA_PKCS_OAEP, CKM.ECDSA, CKM.SHA256_HMAC]) assert.equal(has(m), true, `0x${m.toString(16)}`);
  // Dropped by it (all offered by SoftHSM directly):
  for (const m of [CKM.EDDSA, CKM.EC_EDWARDS_KEY_PAIR_GEN, CKM.ECDH1_DERIVE, CKM.AES_GCM, CKM.AES_KEY_WRAP, CKM.SHA256_RSA_PKCS_PSS]) {
    assert.equal(has(m), false, `0x${m.toString(16)} should not cross p11-kit 0.24`);
  }
});

test("the live probe reports exactly what crosses the socket as supported, and the rest as unsupported", async () => {
  const results = await probeAlgorithms(hsm.token);
  const supported = results.filter((r) => r.supported).map((r) => r.alg);
  const unsupported = results.filter((r) => !r.supported).map((r) => r.alg);
  assert.deepEqual(supported, SUPPORTED);
  assert.deepEqual(unsupported, UNSUPPORTED);
  // Every probed algorithm is in one list or the other (A*GCM and Ed25519 are probed as dir/EdDSA).
  assert.equal(supported.length + unsupported.length, JOSE_ALGORITHMS.filter((a) => a !== "Ed25519" && !/^A\d+GCM$/.test(a)).length);
  for (const r of results.filter((x) => !x.supported)) assert.ok(r.reason && r.reason.length > 0, `${r.alg} has a reason`);
  assert.match(results.find((r) => r.alg === "EdDSA")!.reason!, /CKM_EC_EDWARDS_KEY_PAIR_GEN/);
  assert.match(results.find((r) => r.alg === "ECDH-ES")!.reason!, /CKM_ECDH1_DERIVE/);
  assert.match(results.find((r) => r.alg === "A256KW")!.reason!, /CKM_AES_KEY_WRAP/);
  assert.match(results.find((r) => r.alg === "dir")!.reason!, /CKM_AES_GCM/);
  assert.match(results.find((r) => r.alg === "RSA-OAEP-256")!.reason!, /CKR_ARGUMENTS_BAD/);
  // The probe's throwaway keys are gone.
  await assertNoLeftovers(hsm);
  assert.equal((await hsm.stats()).objects.token, tokenObjects);
});

for (const alg of ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]) {
  test(`${alg} JWT signed over the socket (jose + shim) verifies with node:crypto`, async () => {
    const key = rsa.as(alg);
    const jwt = await new jose.SignJWT({ sub: alg }).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey!);
    assert.equal(nodeVerifyCompact(jwt, key.exportPublic()), true);
    assert.equal((await jose.jwtVerify(jwt, key.publicKey!)).payload.sub, alg);
    const [h, , s] = jwt.split(".");
    assert.equal(nodeVerifyCompact(`${h}.${Buffer.from('{"sub":"x"}').toString("base64url")}.${s}`, key.exportPublic()), false);
    if (alg.startsWith("RS")) {
      // PKCS#1 v1.5 is deterministic: the same input signs to the same bytes.
      const again = await new jose.SignJWT({ sub: alg }).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey!);
      assert.equal(again, jwt);
    }
    // p11-kit's client is a new application (connection) per C_Initialize, so a token thread would
    // not share our login: the threads say so at start and are not used.
    assert.equal(hsm.token.threadStats().serving, 0);
    await assertNoLeftovers(hsm);
  });
}

for (const alg of ["ES256", "ES384", "ES512"]) {
  test(`${alg} JWT signed over the socket (raw CKM_ECDSA, hash in JS) verifies with node:crypto`, async () => {
    const key = ec[alg]!;
    const jwt = await new jose.SignJWT({ sub: alg }).setProtectedHeader({ alg }).sign(key.privateKey!);
    assert.equal(Buffer.from(jwt.split(".")[2]!, "base64url").length, { ES256: 64, ES384: 96, ES512: 132 }[alg]);
    assert.equal(nodeVerifyCompact(jwt, key.exportPublic()), true);
    assert.equal((await jose.jwtVerify(jwt, key.publicKey!)).payload.sub, alg);
    await assertNoLeftovers(hsm);
  });
}

test("HS256 over the socket: the token's MAC equals node:crypto's HMAC byte for byte, and jose verifies on the token", async () => {
  const jwt = await new jose.SignJWT({ sub: "hs" }).setProtectedHeader({ alg: "HS256" }).sign(hmac.secretKey!);
  assert.equal(nodeVerifyHmacCompact(jwt, hmacSecret), true);
  const [h, p] = jwt.split(".");
  const expected = createHmac("sha256", hmacSecret).update(`${h}.${p}`).digest("base64url");
  assert.equal(jwt.split(".")[2], expected);
  assert.equal((await jose.jwtVerify(jwt, hmac.secretKey!)).payload.sub, "hs");
  await assert.rejects(jose.jwtVerify(`${h}.${p}.${Buffer.alloc(32).toString("base64url")}`, hmac.secretKey!), { code: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED" });
  await assertNoLeftovers(hsm);
});

test("RSA-OAEP (SHA-1) JWE made by node:crypto alone is decrypted over the socket", async () => {
  const key = rsa.as("RSA-OAEP");
  for (const enc of ["A128GCM", "A256GCM", "A128CBC-HS256"]) {
    const plaintext = randomBytes(100);
    const jwe = nodeEncryptRsaOaep(key.exportPublic(), enc, plaintext);
    const { plaintext: out, protectedHeader } = await jose.compactDecrypt(jwe, key.privateKey!);
    assert.equal(protectedHeader.enc, enc);
    assert.deepEqual(Buffer.from(out), plaintext);
  }
  // And jose's own encryption with a node:crypto public key (no token involved on that side).
  const jwe = await new jose.CompactEncrypt(Buffer.from("remote")).setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM" }).encrypt(nodePublicKey(key.exportPublic()));
  assert.equal(Buffer.from((await jose.compactDecrypt(jwe, key.privateKey!)).plaintext).toString(), "remote");
  await assertNoLeftovers(hsm);
});

test("what the protocol drops is a typed UnsupportedAlgorithmError, and nothing is left on the token", async () => {
  assert.throws(() => rsa.as("RSA-OAEP-256"), UnsupportedAlgorithmError);
  assert.throws(() => ec.ES256!.as("ECDH-ES"), (e: unknown) => e instanceof UnsupportedAlgorithmError && e.code === "ERR_HSM_UNSUPPORTED_ALGORITHM" && /cannot do ECDH-ES/.test(e.message));
  assert.throws(() => ec.ES256!.as("ECDH-ES+A256KW"), UnsupportedAlgorithmError);
  // Key generation for dropped algorithms: refused with the missing mechanism named, or the key made
  // and destroyed again because it cannot do the algorithm.
  const edErr = await rejectsWith(hsm.generateKey("EdDSA"), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
  assert.match(edErr.message, /CKM_EC_EDWARDS_KEY_PAIR_GEN/);
  for (const alg of ["A256KW", "dir", "A256GCM", "ECDH-ES+A256KW"]) {
    const err = await rejectsWith(hsm.generateKey(alg), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
    assert.match(err.message, new RegExp(`cannot do ${alg.replace("+", "\\+")}`));
  }
  assert.equal((await hsm.stats()).objects.token, tokenObjects, "refused keys were destroyed");
  await assertNoLeftovers(hsm);
});

test("the p11-kit server dies mid-run: the next operation fails with a typed HsmError within seconds, no crash, no hang", async () => {
  // Works right before.
  const before = await new jose.SignJWT({ n: 1 }).setProtectedHeader({ alg: "ES256" }).sign(ec.ES256!.privateKey!);
  assert.equal(nodeVerifyCompact(before, ec.ES256!.exportPublic()), true);

  await remote.kill();
  const TIMEOUT = Symbol("timeout");
  const attempt = new jose.SignJWT({ n: 2 }).setProtectedHeader({ alg: "ES256" }).sign(ec.ES256!.privateKey!).then(
    (jwt) => ({ ok: true as const, jwt }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  const started = Date.now();
  const outcome = await Promise.race([attempt, new Promise<typeof TIMEOUT>((resolve) => setTimeout(resolve, 5000, TIMEOUT).unref())]);
  assert.notEqual(outcome, TIMEOUT, "the operation settled within 5 s");
  if (outcome === TIMEOUT) return;
  assert.equal(outcome.ok, false, "no signature without a server");
  if (outcome.ok) return;
  const error = outcome.error;
  assert.ok(error instanceof HsmError, `a typed HsmError, got ${(error as Error)?.name}: ${(error as Error)?.message}`);
  // Measured: the lost connection makes the sign fail, the one recovery's C_OpenSession answers
  // CKR_DEVICE_ERROR, and that is surfaced as a SessionError.
  assert.ok(error instanceof SessionError, `SessionError, got ${error.name} ${error.code} ${error.ckr}: ${error.message}`);
  assert.equal(error.code, "ERR_HSM_SESSION");
  assert.equal(error.ckr, "CKR_DEVICE_ERROR");
  assert.ok(Date.now() - started < 5000);

  // A second call fails the same typed way, and so do RSA and HMAC.
  for (const key of [rsa, hmac]) {
    const second = await Promise.race([
      new jose.SignJWT({}).setProtectedHeader({ alg: key.alg }).sign((key.privateKey ?? key.secretKey)!).then(() => "signed", (e: unknown) => e),
      new Promise((resolve) => setTimeout(resolve, 5000, TIMEOUT).unref()),
    ]);
    assert.ok(second instanceof HsmError, `${key.alg}: ${String(second)}`);
  }
  // Closing after the loss does not throw or hang.
  await Promise.race([hsm.close(), new Promise((_, reject) => setTimeout(reject, 5000, new Error("close hung")).unref())]);
  assert.equal(hsm.closed, true);
});
