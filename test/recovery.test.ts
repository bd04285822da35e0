/**
 * Recovery from token faults, proven through the fault-injecting PKCS#11 module (test/fault/faulty.c)
 * in front of a real SoftHSM2 token: lost sessions, lost login and a token that goes away are
 * recovered (reopen, log in, find the key again, retry once); a second failure is a typed error;
 * a wrong or locked PIN is never retried; nothing is left behind and the process survives.
 */
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, verify as nodeVerify, type JsonWebKey as NodeJwk } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CompactEncrypt, compactDecrypt, SignJWT } from "jose";
import { freshHsm, leftovers } from "./helpers/token.js";
import { CKR, faultyModule, type FaultyModule } from "./helpers/fault.js";
import { HsmError, installShim, LoginError, openHsm, SessionError, type Hsm, type HsmKey } from "../src/index.js";
import { loadedModules } from "../src/pkcs11/module.js";

let faulty: FaultyModule;
let hsm: Hsm;
let home: string;
let label: string;
let pin: string;
let tokenObjects: number;
let ec: HsmKey;
let rsa: HsmKey;
let ecdh: HsmKey;
let kw: HsmKey;
let uninstallShim: () => void;

const enc = new TextEncoder();

before(async () => {
  uninstallShim = installShim();
  const fixture = await freshHsm();
  home = fixture.home;
  label = fixture.hsm.info.label;
  await fixture.hsm.generateKey("ES256", { label: "ec" });
  await fixture.hsm.generateKey("RS256", { label: "rsa" });
  await fixture.hsm.generateKey("ECDH-ES+A256KW", { label: "ecdh" });
  await fixture.hsm.generateKey("A256KW", { label: "kw" });
  // SoftHSM is one library: finalize it before the faulty module loads it again underneath.
  await fixture.hsm.close();
  pin = readFileSync(join(home, "user.pin"), "utf8").split("\n")[0]!;
  faulty = faultyModule();
  hsm = await openHsm({ module: faulty.path, token: label, pin });
  assert.equal(hsm.info.module, faulty.path);
  tokenObjects = (await hsm.stats()).objects.token;
  assert.equal(tokenObjects, 7); // 3 key pairs and one secret key
  ec = await hsm.getKey("ec", { alg: "ES256" });
  rsa = await hsm.getKey("rsa", { alg: "RS256" });
  ecdh = await hsm.getKey("ecdh", { alg: "ECDH-ES+A256KW" });
  kw = await hsm.getKey("kw", { alg: "A256KW" });
});

after(async () => {
  faulty?.clearFault();
  await hsm?.close();
  uninstallShim?.();
  faulty?.dispose();
  if (home) rmSync(home, { recursive: true, force: true });
});

afterEach(async () => {
  faulty.clearFault();
  assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  assert.equal((await hsm.stats()).objects.token, tokenObjects);
});

/** Sign a JWT with `key` and check its signature with node:crypto (not through hsmkey or jose). */
async function signAndCheck(key: HsmKey, claims: Record<string, unknown> = { sub: "alice" }): Promise<string> {
  const jwt = await new SignJWT(claims).setProtectedHeader({ alg: key.alg }).sign(key.privateKey!);
  assertJwtSignature(key, jwt);
  return jwt;
}

function assertJwtSignature(key: HsmKey, jwt: string): void {
  const [h, p, s] = jwt.split(".");
  const publicKey = createPublicKey({ key: key.exportPublic() as unknown as NodeJwk, format: "jwk" });
  const ok = nodeVerify("sha256", Buffer.from(`${h}.${p}`), { key: publicKey, dsaEncoding: "ieee-p1363" }, Buffer.from(s!, "base64url"));
  assert.equal(ok, true, `${key.alg} signature does not verify with node:crypto`);
}

async function rejectsWith<T extends HsmError>(promise: Promise<unknown>, cls: new (...args: never[]) => T, code: string, ckr: string): Promise<T> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof cls, `expected ${cls.name}, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.ckr, ckr);
    assert.doesNotMatch(error.message, new RegExp(pin));
    return error;
  }
  assert.fail(`expected ${cls.name} ${code} ${ckr}, but it succeeded`);
}

const RECOVERABLE: [string, number][] = [
  ["CKR_SESSION_HANDLE_INVALID", CKR.SESSION_HANDLE_INVALID],
  ["CKR_SESSION_CLOSED", CKR.SESSION_CLOSED],
  ["CKR_USER_NOT_LOGGED_IN", CKR.USER_NOT_LOGGED_IN],
  ["CKR_DEVICE_REMOVED", CKR.DEVICE_REMOVED],
  ["CKR_TOKEN_NOT_PRESENT", CKR.TOKEN_NOT_PRESENT],
  ["CKR_DEVICE_ERROR", CKR.DEVICE_ERROR],
];

for (const alg of ["ES256", "RS256"] as const) {
  // ES256 signs synchronously on an idle session (fast path); RS256 goes through a worker thread.
  for (const [name, rv] of RECOVERABLE) {
    test(`${alg}: ${name} once from C_Sign is recovered (re-login, key found again, retried once)`, async () => {
      const key = alg === "ES256" ? ec : rsa;
      const generation = hsm.token.generation;
      faulty.resetTrace();
      faulty.setFault({ function: "C_Sign", rv, nth: 1 });
      await signAndCheck(key);
      assert.equal(faulty.faults("C_Sign"), 1, "the fault was injected");
      assert.equal(faulty.calls("C_Sign"), 2, "one failed call, one retry");
      assert.equal(faulty.calls("C_Login"), 1, "logged in again during recovery");
      assert.equal(hsm.token.generation, generation + 1);
      assert.ok(faulty.calls("C_FindObjectsInit") >= 1, "key handle looked up again by identity");
    });
  }

  test(`${alg}: CKR_DEVICE_ERROR twice in a row is a SessionError with ckr, then the next call works`, async () => {
    const key = alg === "ES256" ? ec : rsa;
    faulty.resetTrace();
    faulty.setFault({ function: "C_Sign", rv: CKR.DEVICE_ERROR, nth: 1, count: 2 });
    const error = await rejectsWith(signAndCheck(key), SessionError, "ERR_HSM_SESSION", "CKR_DEVICE_ERROR");
    assert.match(error.message, /C_Sign/);
    assert.match(error.message, /label 'ec'|label 'rsa'/);
    assert.equal(faulty.faults("C_Sign"), 2);
    assert.equal(faulty.calls("C_Sign"), 2, "retried exactly once");
    await signAndCheck(key, { sub: "after" });
    assert.equal(faulty.calls("C_Sign"), 3);
  });

  test(`${alg}: CKR_SESSION_HANDLE_INVALID from C_SignInit is recovered`, async () => {
    const key = alg === "ES256" ? ec : rsa;
    faulty.resetTrace();
    faulty.setFault({ function: "C_SignInit", rv: CKR.SESSION_HANDLE_INVALID, nth: 1 });
    await signAndCheck(key);
    assert.equal(faulty.faults("C_SignInit"), 1);
    assert.equal(faulty.calls("C_SignInit"), 2);
  });

  test(`${alg}: an error that is not a lost session (CKR_GENERAL_ERROR) is not retried`, async () => {
    const key = alg === "ES256" ? ec : rsa;
    faulty.resetTrace();
    faulty.setFault({ function: "C_Sign", rv: CKR.GENERAL_ERROR, nth: 1 });
    await assert.rejects(signAndCheck(key), (error: unknown) => {
      // Through WebCrypto a plain token failure is an OperationError whose cause is the HsmError.
      const cause = error instanceof HsmError ? error : (error as { cause?: unknown }).cause;
      assert.ok(cause instanceof HsmError, String(error));
      assert.equal(cause.ckr, "CKR_GENERAL_ERROR");
      return true;
    });
    assert.equal(faulty.calls("C_Sign"), 1, "not retried");
    assert.equal(faulty.calls("C_Login"), 0, "no recovery");
    await signAndCheck(key);
  });
}

/** Use both keys once, so that their cached object handles belong to the current token generation. */
async function refreshHandles(): Promise<void> {
  await signAndCheck(ec);
  await signAndCheck(rsa);
}

/** Log in again whatever a test did, and bring both keys' handles to the current generation. */
async function relogin(): Promise<void> {
  faulty.clearFault();
  await hsm.token.recover();
  await refreshHandles();
}

test("a real lost login (C_Logout behind the library's back) is recovered by logging in again", async () => {
  try {
    await refreshHandles();
    faulty.resetTrace();
    hsm.token.lib.C_Logout(hsm.token.anchor);
    await signAndCheck(ec);
    await signAndCheck(rsa);
    assert.equal(faulty.calls("C_Login"), 1);
    assert.equal((await hsm.stats()).objects.token, tokenObjects, "private objects visible again");
  } finally {
    await relogin();
  }
});

test("a real lost login is recovered for a key whose cached handle is stale", async () => {
  try {
    await signAndCheck(ec);
    // A recovery bumps the generation: rsa's cached handle is now stale.
    faulty.setFault({ function: "C_Sign", rv: CKR.SESSION_HANDLE_INVALID, nth: 1 });
    await signAndCheck(ec);
    faulty.clearFault();
    faulty.resetTrace();
    hsm.token.lib.C_Logout(hsm.token.anchor);
    await signAndCheck(rsa);
    assert.equal(faulty.calls("C_Login"), 1);
    const again = await hsm.getKey("rsa", { alg: "RS256" });
    assert.equal(again.kid, rsa.kid);
  } finally {
    await relogin();
  }
});

test("CKR_PIN_INCORRECT from C_Login during recovery is a LoginError, C_Login called exactly once", async () => {
  await refreshHandles();
  faulty.resetTrace();
  faulty.setFault([
    { function: "C_Sign", rv: CKR.USER_NOT_LOGGED_IN, nth: 1 },
    { function: "C_Login", rv: CKR.PIN_INCORRECT, every: 1 },
  ]);
  try {
    await rejectsWith(signAndCheck(ec), LoginError, "ERR_HSM_PIN_INCORRECT", "CKR_PIN_INCORRECT");
    assert.equal(faulty.calls("C_Sign"), 1, "the operation is not retried after the failed login");
    assert.equal(faulty.calls("C_Login"), 1, "a wrong PIN is never retried");
  } finally {
    await relogin();
  }
});

test("CKR_PIN_LOCKED from C_Login during recovery is a LoginError, C_Login called exactly once", async () => {
  faulty.resetTrace();
  faulty.setFault([
    { function: "C_Sign", rv: CKR.SESSION_CLOSED, nth: 1 },
    { function: "C_Login", rv: CKR.PIN_LOCKED, every: 1 },
  ]);
  try {
    await rejectsWith(signAndCheck(rsa), LoginError, "ERR_HSM_PIN_LOCKED", "CKR_PIN_LOCKED");
    assert.equal(faulty.calls("C_Sign"), 1);
    assert.equal(faulty.calls("C_Login"), 1, "a locked PIN is never retried");
  } finally {
    await relogin();
  }
});

test("after a failed re-login, the next operation tries to recover again (and succeeds once the token accepts the PIN)", async () => {
  try {
    await refreshHandles();
    faulty.setFault([
      { function: "C_Sign", rv: CKR.SESSION_HANDLE_INVALID, nth: 1 },
      { function: "C_Login", rv: CKR.PIN_INCORRECT, nth: 1 },
    ]);
    await rejectsWith(signAndCheck(ec), LoginError, "ERR_HSM_PIN_INCORRECT", "CKR_PIN_INCORRECT");
    // Recovery closed every session (SoftHSM then logs out) and the login failed: the token is
    // logged out now. The next sign must log in again rather than report the key missing.
    faulty.clearFault();
    faulty.resetTrace();
    await signAndCheck(ec, { sub: "recovered" });
    assert.equal(faulty.calls("C_Login"), 1);
  } finally {
    await relogin();
  }
});

for (const [name, rv, code] of [
  ["CKR_PIN_INCORRECT", CKR.PIN_INCORRECT, "ERR_HSM_PIN_INCORRECT"],
  ["CKR_PIN_LOCKED", CKR.PIN_LOCKED, "ERR_HSM_PIN_LOCKED"],
] as const) {
  test(`${name} from C_Login at open is a LoginError ${code}, not retried, module reference released`, async () => {
    const users = loadedModules().find((m) => m.path === faulty.path)?.users;
    assert.equal(users, 1);
    faulty.resetTrace();
    faulty.setFault({ function: "C_Login", rv, every: 1 });
    await rejectsWith(openHsm({ module: faulty.path, token: label, pin }), LoginError, code, name);
    assert.equal(faulty.calls("C_Login"), 1);
    assert.equal(faulty.calls("C_OpenSession"), 1);
    assert.equal(faulty.calls("C_CloseSession"), 1, "the anchor session of the failed open is closed");
    assert.equal(loadedModules().find((m) => m.path === faulty.path)?.users, 1);
    faulty.clearFault();
    await signAndCheck(ec);
  });
}

test("CKR_DEVICE_ERROR from C_OpenSession at open is a SessionError; the module reference is released", async () => {
  faulty.resetTrace();
  faulty.setFault({ function: "C_OpenSession", rv: CKR.DEVICE_ERROR, every: 1 });
  await rejectsWith(openHsm({ module: faulty.path, token: label, pin }), SessionError, "ERR_HSM_SESSION", "CKR_DEVICE_ERROR");
  assert.equal(faulty.calls("C_Login"), 0);
  assert.equal(loadedModules().find((m) => m.path === faulty.path)?.users, 1);
});

test("CKR_DEVICE_ERROR from C_OpenSession while the pool grows is recovered", async () => {
  // A recovery first, so that the pool has (almost) no idle session and must open new ones.
  faulty.setFault({ function: "C_Sign", rv: CKR.SESSION_HANDLE_INVALID, nth: 1 });
  await signAndCheck(ec);
  const idle = (await hsm.stats()).sessions.idle;
  assert.ok(idle < 7, `idle sessions: ${idle}`);
  faulty.resetTrace();
  faulty.setFault({ function: "C_OpenSession", rv: CKR.DEVICE_ERROR, nth: 1 });
  const jwts = await Promise.all(Array.from({ length: idle + 1 }, (_, i) => signAndCheck(rsa, { i })));
  assert.equal(jwts.length, idle + 1);
  assert.equal(faulty.faults("C_OpenSession"), 1);
});

test("C_FindObjectsInit and C_GetAttributeValue losing the session during getKey are recovered", async () => {
  for (const fn of ["C_FindObjectsInit", "C_GetAttributeValue"]) {
    faulty.resetTrace();
    faulty.setFault({ function: fn, rv: CKR.SESSION_HANDLE_INVALID, nth: 1 });
    const key = await hsm.getKey("ec", { alg: "ES256" });
    assert.equal(key.kid, ec.kid);
    assert.equal(faulty.faults(fn), 1, fn);
    await signAndCheck(key);
  }
});

test("C_Decrypt (RSA-OAEP), C_DeriveKey (ECDH-ES) and C_UnwrapKey (A256KW) losing the session are recovered", async () => {
  const cases: [string, HsmKey, CryptoKey][] = [
    ["C_Decrypt", rsa.as("RSA-OAEP"), rsa.as("RSA-OAEP").privateKey!],
    ["C_DeriveKey", ecdh, ecdh.privateKey!],
    ["C_UnwrapKey", kw, kw.secretKey!],
  ];
  for (const [fn, key, decryptKey] of cases) {
    const plaintext = enc.encode(`secret for ${fn}`);
    const encryptKey = key.publicKey ?? key.secretKey!;
    const jwe = await new CompactEncrypt(plaintext).setProtectedHeader({ alg: key.alg, enc: "A256GCM" }).encrypt(encryptKey);
    faulty.resetTrace();
    faulty.setFault({ function: fn, rv: CKR.SESSION_HANDLE_INVALID, nth: 1 });
    const { plaintext: out } = await compactDecrypt(jwe, decryptKey);
    assert.deepEqual(Buffer.from(out), Buffer.from(plaintext), fn);
    assert.equal(faulty.faults(fn), 1, `${fn} was faulted`);
    assert.equal(faulty.calls(fn), 2, `${fn} retried once`);
    faulty.clearFault();
  }
});

test("C_WrapKey (A256KW encryption) losing the session is recovered", async () => {
  faulty.resetTrace();
  faulty.setFault({ function: "C_WrapKey", rv: CKR.SESSION_CLOSED, nth: 1 });
  const jwe = await new CompactEncrypt(enc.encode("wrapped")).setProtectedHeader({ alg: "A256KW", enc: "A256GCM" }).encrypt(kw.secretKey!);
  assert.equal(faulty.faults("C_WrapKey"), 1);
  assert.equal(faulty.calls("C_WrapKey"), 2);
  faulty.clearFault();
  const { plaintext } = await compactDecrypt(jwe, kw.secretKey!);
  assert.equal(new TextDecoder().decode(plaintext), "wrapped");
});

test("C_GenerateKeyPair losing the session is recovered and creates exactly one key pair", async () => {
  faulty.resetTrace();
  faulty.setFault({ function: "C_GenerateKeyPair", rv: CKR.SESSION_HANDLE_INVALID, nth: 1 });
  const key = await hsm.generateKey("ES256", { label: "generated-under-fault" });
  assert.equal(faulty.calls("C_GenerateKeyPair"), 2);
  faulty.clearFault();
  assert.equal((await hsm.stats()).objects.token, tokenObjects + 2);
  await signAndCheck(key);
  assert.equal(await hsm.deleteKey("generated-under-fault"), 2);
});

test("a 200 ms delay on C_Sign under 24 concurrent signs: all verify, the pool is not exceeded, nothing leaks", async () => {
  faulty.resetTrace();
  faulty.setFault({ delayFunction: "C_Sign", delayMs: 200 });
  const started = performance.now();
  const jwts = await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => signAndCheck(rsa, { i })),
    ...Array.from({ length: 4 }, (_, i) => signAndCheck(ec, { i })),
  ]);
  const elapsed = performance.now() - started;
  assert.equal(new Set(jwts).size, 24);
  assert.equal(faulty.calls("C_Sign"), 24);
  assert.ok(elapsed >= 200, `elapsed ${elapsed} ms`);
  // RS256 runs on worker threads in parallel: far less than 24 x 200 ms.
  assert.ok(elapsed < 24 * 200, `delayed signs were serialised: ${elapsed} ms`);
  assert.ok((await hsm.stats()).sessions.open <= 8);
});

test("random lost sessions (p = 0.3) under 200 concurrent signs: each sign verifies or is a SessionError", async () => {
  faulty.resetTrace();
  faulty.setFault({ function: "C_Sign", rv: CKR.SESSION_HANDLE_INVALID, probability: 0.3 });
  const results = await Promise.allSettled(
    Array.from({ length: 200 }, (_, i) => signAndCheck(i % 10 === 0 ? rsa : ec, { i })),
  );
  faulty.clearFault();
  const ok = results.filter((r) => r.status === "fulfilled").length;
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  for (const f of failed) {
    assert.ok(f.reason instanceof SessionError, String(f.reason));
    assert.equal(f.reason.ckr, "CKR_SESSION_HANDLE_INVALID");
  }
  assert.ok(ok > 100, `only ${ok} of 200 succeeded`);
  // Every forwarded C_Sign produced one signature; every failure used up two faulted calls.
  assert.equal(faulty.calls("C_Sign") - faulty.faults("C_Sign"), ok);
  assert.ok(faulty.faults("C_Sign") >= 2 * failed.length);
  await signAndCheck(ec);
});

test("the process survived and the faulty module is still the one in use", async () => {
  assert.deepEqual(loadedModules().map((m) => m.path), [faulty.path]);
  assert.equal(hsm.closed, false);
  await signAndCheck(rsa);
});
