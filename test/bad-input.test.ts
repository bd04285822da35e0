/**
 * Bad input matrix: every mistake is a typed error with a stable code, and nothing is left behind
 * on the token (no session object, no busy session, no new token object). Payload sizes from
 * 0 bytes to 16 MiB sign correctly, checked with node:crypto.
 */
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, verify as nodeVerify, type JsonWebKey as NodeJwk } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CompactSign } from "jose";
import { freshHsm, leftovers, type Fixture } from "./helpers/token.js";
import {
  HsmError,
  installShim,
  InvalidInputError,
  KeyNotFoundError,
  LoginError,
  ModuleLoadError,
  openHsm,
  SessionError,
  TokenNotFoundError,
  UnsupportedAlgorithmError,
  type HsmKey,
} from "../src/index.js";

let fixture: Fixture;
let module: string;
let label: string;
let pin: string;
let ec: HsmKey;
let rsa: HsmKey;
let tokenObjects: number;
let scratch: string;
let uninstallShim: () => void;

before(async () => {
  uninstallShim = installShim();
  fixture = await freshHsm();
  module = fixture.hsm.info.module;
  label = fixture.hsm.info.label;
  pin = readFileSync(join(fixture.home, "user.pin"), "utf8").split("\n")[0]!;
  ec = await fixture.hsm.generateKey("ES256", { label: "ec" });
  rsa = await fixture.hsm.generateKey("RS256", { label: "rsa" });
  tokenObjects = (await fixture.hsm.stats()).objects.token;
  assert.equal(tokenObjects, fixture.baseline.token + 4);
  scratch = mkdtempSync(join(tmpdir(), "hsmkey-bad-input-"));
});

after(async () => {
  uninstallShim?.();
  await fixture?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

afterEach(async () => {
  assert.deepEqual(await leftovers(fixture.hsm), { sessionObjects: 0, busySessions: 0 });
  assert.equal((await fixture.hsm.stats()).objects.token, tokenObjects);
});

async function rejectsTyped(promise: Promise<unknown> | (() => unknown), cls: new (...args: never[]) => HsmError, code: string): Promise<HsmError> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (error) {
    assert.ok(error instanceof cls, `expected ${cls.name}, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.doesNotMatch(error.message, new RegExp(pin), "an error message shows the PIN");
    return error;
  }
  assert.fail(`expected ${cls.name} (${code}), but it succeeded`);
}

test("a module path that does not exist is a ModuleLoadError naming the path", async () => {
  const path = join(scratch, "no-such-module.so");
  const error = await rejectsTyped(openHsm({ module: path, token: label, pin }), ModuleLoadError, "ERR_HSM_MODULE_LOAD");
  assert.match(error.message, /no-such-module\.so/);
});

test("a file that is not a shared library is a ModuleLoadError", async () => {
  const path = join(scratch, "not-a-library.so");
  writeFileSync(path, "this is not an ELF file\n");
  const error = await rejectsTyped(openHsm({ module: path, token: label, pin }), ModuleLoadError, "ERR_HSM_MODULE_LOAD");
  assert.match(error.message, /not-a-library\.so/);
});

test("a shared library without C_GetFunctionList is a ModuleLoadError", async (t) => {
  const candidates = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/aarch64-linux-gnu/libz.so.1", "/usr/lib/libz.so.1"];
  const path = candidates.find((p) => existsSync(p));
  if (!path) return t.skip("no libz.so.1 at a known path to stand in for a non-PKCS#11 library");
  await rejectsTyped(openHsm({ module: path, token: label, pin }), ModuleLoadError, "ERR_HSM_MODULE_LOAD");
});

test("an unknown token label is a TokenNotFoundError naming the label", async () => {
  const error = await rejectsTyped(openHsm({ module, token: "no-such-token", pin }), TokenNotFoundError, "ERR_HSM_TOKEN_NOT_FOUND");
  assert.match(error.message, /no-such-token/);
});

test("a wrong PIN is a LoginError ERR_HSM_PIN_INCORRECT with the CKR name, and the PIN is not in the message", async () => {
  // SoftHSM answers CKR_USER_ALREADY_LOGGED_IN to any PIN while the application is logged in, so
  // the fixture's Hsm is closed first (the module is finalized) and opened again afterwards.
  await fixture.hsm.close();
  try {
    const wrong = "0000wrong-pin-0000";
    const error = await rejectsTyped(openHsm({ module, token: label, pin: wrong }), LoginError, "ERR_HSM_PIN_INCORRECT");
    assert.equal(error.ckr, "CKR_PIN_INCORRECT");
    assert.doesNotMatch(error.message, /wrong-pin/);
  } finally {
    fixture.hsm = await openHsm({ module, token: label, pin });
    ec = await fixture.hsm.getKey("ec", { alg: "ES256" });
    rsa = await fixture.hsm.getKey("rsa", { alg: "RS256" });
  }
  await signAndVerify(ec, new Uint8Array([1, 2, 3]));
});

test(
  "a wrong PIN is refused even while another Hsm of the process is logged in to the same token",
  async () => {
    let opened: Awaited<ReturnType<typeof openHsm>> | undefined;
    try {
      await rejectsTyped(
        openHsm({ module, token: label, pin: "0000wrong-pin-0000" }).then((h) => (opened = h)),
        LoginError,
        "ERR_HSM_PIN_INCORRECT",
      );
    } finally {
      await opened?.close();
    }
  },
);

test("an unknown key (label, id, URI) is a KeyNotFoundError naming the reference", async () => {
  for (const ref of ["no-such-key", { id: "deadbeef" }, "pkcs11:object=no-such-key;type=private"] as const) {
    const error = await rejectsTyped(fixture.hsm.getKey(ref), KeyNotFoundError, "ERR_HSM_KEY_NOT_FOUND");
    assert.match(error.message, /no-such-key|deadbeef/);
  }
  await rejectsTyped(fixture.hsm.deleteKey("no-such-key"), KeyNotFoundError, "ERR_HSM_KEY_NOT_FOUND");
});

test("a key of the wrong type for the algorithm is an UnsupportedAlgorithmError", async () => {
  await rejectsTyped(() => ec.as("RS256"), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
  await rejectsTyped(() => rsa.as("ES256"), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
  await rejectsTyped(() => ec.as("ES384"), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM"); // P-256 key
  await rejectsTyped(fixture.hsm.getKey("ec", { alg: "PS256" }), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
  await rejectsTyped(fixture.hsm.getKey("ec", { alg: "XX999" }), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
});

test("an algorithm this token cannot do (RSA-OAEP-256 on SoftHSM) is an UnsupportedAlgorithmError", async () => {
  await rejectsTyped(() => rsa.as("RSA-OAEP-256"), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
  await rejectsTyped(fixture.hsm.generateKey("RSA-OAEP-256"), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
});

test("malformed JWKs are InvalidInputError ERR_HSM_INVALID_INPUT, and create nothing", async () => {
  const bad: JsonWebKey[] = [
    { kty: "EC", crv: "P-256" }, // no coordinates, no d
    { kty: "RSA", n: "AQAB", e: "AQAB" }, // public only
    { kty: "XYZ" } as JsonWebKey,
    { kty: "oct", alg: "HS256" }, // no k
  ];
  for (const jwk of bad) {
    await rejectsTyped(fixture.hsm.importKey(jwk), InvalidInputError, "ERR_HSM_INVALID_INPUT");
  }
});

test(
  "an EC JWK whose coordinates have the wrong length is an InvalidInputError, and nothing is left on the token",
  async () => {
    await rejectsTyped(fixture.hsm.importKey({ kty: "EC", crv: "P-256", x: "AAAA", y: "AAAA", d: "AAAA" }), InvalidInputError, "ERR_HSM_INVALID_INPUT");
  },
);

test("malformed PEM is InvalidInputError ERR_HSM_INVALID_INPUT", async () => {
  for (const pem of ["", "not a pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"]) {
    await rejectsTyped(fixture.hsm.importKey(pem), InvalidInputError, "ERR_HSM_INVALID_INPUT");
  }
});

test("malformed pkcs11: URIs are InvalidInputError ERR_HSM_URI", async () => {
  await rejectsTyped(openHsm({ uri: "http://example.com" }), InvalidInputError, "ERR_HSM_URI");
  await rejectsTyped(openHsm("pkcs11:token=%zz"), InvalidInputError, "ERR_HSM_URI");
  await rejectsTyped(fixture.hsm.getKey("pkcs11:object=ec;type=cert"), InvalidInputError, "ERR_HSM_URI");
  await rejectsTyped(fixture.hsm.getKey("pkcs11:id=%zz"), InvalidInputError, "ERR_HSM_URI");
});

/** Sign `data` through jose (shim) and through hsm.crypto.subtle; verify both with node:crypto. */
async function signAndVerify(key: HsmKey, data: Uint8Array): Promise<void> {
  const publicKey = createPublicKey({ key: key.exportPublic() as unknown as NodeJwk, format: "jwk" });
  const check = (signed: Uint8Array, sig: Uint8Array, what: string) =>
    assert.equal(nodeVerify("sha256", signed, { key: publicKey, dsaEncoding: "ieee-p1363" }, sig), true, `${key.alg} ${what} (${data.length} bytes)`);

  const jws = await new CompactSign(data).setProtectedHeader({ alg: key.alg, b64: true }).sign(key.privateKey!);
  const [h, p, s] = jws.split(".");
  assert.equal(Buffer.from(p!, "base64url").length, data.length);
  check(Buffer.from(`${h}.${p}`), Buffer.from(s!, "base64url"), "jose");

  const algorithm = key.kty === "EC" ? { name: "ECDSA", hash: "SHA-256" } : { name: "RSASSA-PKCS1-v1_5" };
  const sig = new Uint8Array(await fixture.hsm.crypto.subtle.sign(algorithm, key.privateKey!, data));
  check(data, sig, "hsm.crypto.subtle");
}

const MiB = 1024 * 1024;
for (const size of [0, 1, 16 * MiB]) {
  for (const alg of ["ES256", "RS256"] as const) {
    test(`${alg}: a ${size}-byte payload signs and verifies with node:crypto`, async () => {
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i += 4096) data[i] = i & 0xff;
      if (size === 1) data[0] = 0x2a;
      await signAndVerify(alg === "ES256" ? ec : rsa, data);
    });
  }
}

test("an empty Uint8Array view into a larger buffer signs the empty message", async () => {
  const backing = new Uint8Array([1, 2, 3, 4]);
  const empty = backing.subarray(2, 2);
  const sig = new Uint8Array(await fixture.hsm.crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, ec.privateKey!, empty));
  const publicKey = createPublicKey({ key: ec.exportPublic() as unknown as NodeJwk, format: "jwk" });
  assert.equal(nodeVerify("sha256", Buffer.alloc(0), { key: publicKey, dsaEncoding: "ieee-p1363" }, sig), true);
});

test("a closed Hsm used again is a SessionError ERR_HSM_CLOSED, for every entry point", async () => {
  const second = await openHsm({ module, token: label, pin });
  const key = await second.getKey("ec", { alg: "ES256" });
  await second.close();
  await second.close(); // idempotent
  assert.equal(second.closed, true);
  await rejectsTyped(second.getKey("ec"), SessionError, "ERR_HSM_CLOSED");
  await rejectsTyped(second.generateKey("ES256"), SessionError, "ERR_HSM_CLOSED");
  await rejectsTyped(second.listKeys(), SessionError, "ERR_HSM_CLOSED");
  await rejectsTyped(second.deleteKey("ec"), SessionError, "ERR_HSM_CLOSED");
  await rejectsTyped(second.importKey({ kty: "oct", k: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", alg: "HS256" }), SessionError, "ERR_HSM_CLOSED");
  await rejectsTyped(
    new CompactSign(new Uint8Array([1])).setProtectedHeader({ alg: "ES256" }).sign(key.privateKey!),
    SessionError,
    "ERR_HSM_CLOSED",
  );
  await rejectsTyped(second.crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey!, new Uint8Array([1])), SessionError, "ERR_HSM_CLOSED");
  // The first Hsm on the same module is unaffected.
  await signAndVerify(ec, new Uint8Array([9]));
});
