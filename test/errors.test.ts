/**
 * Every error class hsmkey exports, provoked for real against a fresh SoftHSM2 token, with its
 * stable `code` (and CKR name where the token said it); and no error ever contains the PIN.
 *
 * Wrong PINs are tried at most twice in this file (tokens lock PINs after a few failures), and the
 * right PIN is used afterwards to prove the token still opens.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import * as jose from "jose";
import {
  HsmError,
  InvalidInputError,
  KeyExportError,
  KeyNotFoundError,
  LoginError,
  ModuleLoadError,
  openHsm,
  SessionError,
  TokenNotFoundError,
  UnsupportedAlgorithmError,
  installShim,
  type Hsm,
  type HsmKey,
} from "../src/index.js";
import { freshHsm, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, nodeVerifyCompact } from "./helpers/native.js";

let fixture: Fixture;
let hsm: Hsm;
let pin: string;
let uninstall: () => void;
let rsa: HsmKey;
let ec: HsmKey;
const seen: unknown[] = [];

function libc(): string {
  for (const p of ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib/libc.so.6", "/lib64/libc.so.6"]) {
    try {
      readFileSync(p, { flag: "r" }).subarray(0, 4);
      return p;
    } catch {
      // try the next one
    }
  }
  throw new Error("no libc found");
}

/** Collect an error for the PIN check at the end, and check it is an HsmError with `code`. */
function expectHsmError<T extends HsmError>(error: unknown, cls: abstract new (...a: never[]) => T, code: string): T {
  seen.push(error);
  assert.ok(error instanceof cls, `expected ${cls.name}, got ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
  assert.ok(error instanceof HsmError);
  assert.ok(error instanceof Error);
  assert.equal(error.code, code);
  assert.equal(error.name, cls.name);
  return error as T;
}

async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  assert.fail("expected an error");
}

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  pin = readFileSync(join(fixture.home, "user.pin"), "utf8").split("\n")[0]!;
  assert.ok(pin.length >= 4);
  uninstall = installShim();
  rsa = await hsm.generateKey("RS256", { label: "err-rsa" });
  ec = await hsm.generateKey("ES256", { label: "err-ec" });
});

after(async () => {
  uninstall();
  await fixture.close();
});

describe("ModuleLoadError", () => {
  test("a module path that does not exist", async () => {
    const error = expectHsmError(await caught(() => openHsm({ module: "/nonexistent/libpkcs11-nothing.so", token: "x", pin })), ModuleLoadError, "ERR_HSM_MODULE_LOAD");
    assert.match(error.message, /\/nonexistent\/libpkcs11-nothing\.so/);
  });

  test("a file that is not a shared library (/etc/hostname)", async () => {
    const error = expectHsmError(await caught(() => openHsm({ module: "/etc/hostname", token: "x", pin })), ModuleLoadError, "ERR_HSM_MODULE_LOAD");
    assert.match(error.message, /\/etc\/hostname/);
  });

  test("a shared library that is not a PKCS#11 module (libc)", async () => {
    const path = libc();
    const error = expectHsmError(await caught(() => openHsm({ module: path, token: "x", pin })), ModuleLoadError, "ERR_HSM_MODULE_LOAD");
    assert.ok(error.message.includes(path), error.message);
  });
});

describe("TokenNotFoundError", () => {
  test("an unknown token label, on the real module", async () => {
    const error = expectHsmError(
      await caught(() => openHsm({ module: hsm.info.module, token: "no-such-token-label", pin })),
      TokenNotFoundError,
      "ERR_HSM_TOKEN_NOT_FOUND",
    );
    assert.match(error.message, /no-such-token-label/);
    // The failed open did not disturb the open Hsm.
    const jws = await new jose.CompactSign(new Uint8Array([1])).setProtectedHeader({ alg: "ES256" }).sign(ec.privateKey!);
    assert.equal(nodeVerifyCompact(jws, ec.exportPublic()), true);
  });

  test("an unknown serial", async () => {
    expectHsmError(await caught(() => openHsm({ module: hsm.info.module, serial: "0000000000000000", pin })), TokenNotFoundError, "ERR_HSM_TOKEN_NOT_FOUND");
  });
});

describe("KeyNotFoundError, KeyExportError, UnsupportedAlgorithmError, InvalidInputError", () => {
  test("KeyNotFoundError names the reference", async () => {
    for (const [ref, text] of [
      ["missing-label", "missing-label"],
      [{ id: "c0ffee" }, "c0ffee"],
      ["pkcs11:object=missing-uri-object", "missing-uri-object"],
    ] as const) {
      const error = expectHsmError(await caught(() => hsm.getKey(ref)), KeyNotFoundError, "ERR_HSM_KEY_NOT_FOUND");
      assert.ok(error.message.includes(text), error.message);
    }
  });

  test("KeyExportError from exportPrivate, and exportKey of the private CryptoKey is InvalidAccessError", async () => {
    for (const key of [rsa, ec]) {
      expectHsmError(await caught(() => key.exportPrivate()), KeyExportError, "ERR_HSM_KEY_EXPORT");
      for (const format of ["jwk", "pkcs8"] as const) {
        const error = await caught(() => crypto.subtle.exportKey(format, key.privateKey!));
        seen.push(error);
        assert.ok(error instanceof DOMException);
        assert.equal(error.name, "InvalidAccessError");
      }
    }
  });

  test("UnsupportedAlgorithmError: an algorithm that does not fit the key, or an unknown one", async () => {
    expectHsmError(await caught(() => rsa.as("ES256")), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
    expectHsmError(await caught(() => ec.as("ES384")), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
    expectHsmError(await caught(() => ec.as("RS256")), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
    const unknown = expectHsmError(await caught(() => rsa.as("XS999")), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
    assert.match(unknown.message, /XS999/);
    expectHsmError(await caught(() => hsm.generateKey("XS999")), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
    expectHsmError(await caught(() => hsm.getKey("err-rsa", { alg: "XS999" })), UnsupportedAlgorithmError, "ERR_HSM_UNSUPPORTED_ALGORITHM");
  });

  test("InvalidInputError with ERR_HSM_URI for malformed pkcs11: URIs", async () => {
    for (const uri of ["pkcs11:object=%zz", "pkcs11:object=a;type=cert", "pkcs11:id=%4"]) {
      const error = await caught(() => hsm.getKey(uri));
      expectHsmError(error, InvalidInputError, "ERR_HSM_URI");
    }
    expectHsmError(await caught(() => openHsm("pkcs11:token=%zz")), InvalidInputError, "ERR_HSM_URI");
    expectHsmError(await caught(() => openHsm({ uri: "http://example.com" })), InvalidInputError, "ERR_HSM_URI");
  });

  test("InvalidInputError for malformed keys to import", async () => {
    const before = (await hsm.stats()).objects.token;
    for (const bad of [
      { kty: "RSA", n: "AQAB", e: "AQAB" }, // public only / missing members
      { kty: "EC", crv: "P-256", x: "abc", y: "def" },
      { kty: "EC", crv: "P-999", x: "abc", y: "def", d: "ghi" },
      { kty: "oct", k: "c2VjcmV0" }, // oct without alg
      { kty: "nope" },
    ] as JsonWebKey[]) {
      const error = await caught(() => hsm.importKey(bad, { label: "err-import" }));
      expectHsmError(error, InvalidInputError, "ERR_HSM_INVALID_INPUT");
    }
    expectHsmError(await caught(() => hsm.importKey("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")), InvalidInputError, "ERR_HSM_INVALID_INPUT");
    assert.equal((await hsm.stats()).objects.token, before, "failed imports left objects on the token");
  });
});

describe("SessionError", () => {
  test("using an Hsm after close() is ERR_HSM_CLOSED, and closing it does not disturb another Hsm on the token", async () => {
    const second = await openHsm({ module: hsm.info.module, token: hsm.info.label, pinFile: join(fixture.home, "user.pin") });
    const key = await second.getKey("err-ec");
    assert.equal(key.kid, ec.kid);
    await second.close();
    await second.close(); // idempotent
    assert.equal(second.closed, true);
    expectHsmError(await caught(() => second.getKey("err-ec")), SessionError, "ERR_HSM_CLOSED");
    expectHsmError(await caught(() => second.generateKey("ES256")), SessionError, "ERR_HSM_CLOSED");
    expectHsmError(await caught(() => second.listKeys()), SessionError, "ERR_HSM_CLOSED");
    // A CryptoKey of the closed Hsm: the WebCrypto call rejects with the SessionError itself.
    expectHsmError(await caught(() => crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey!, new Uint8Array(8))), SessionError, "ERR_HSM_CLOSED");
    // The fixture's Hsm on the same token still works (same module, still logged in).
    const jws = await new jose.CompactSign(new Uint8Array([2])).setProtectedHeader({ alg: "RS256" }).sign(rsa.privateKey!);
    assert.equal(nodeVerifyCompact(jws, rsa.exportPublic()), true);
    assert.equal((await hsm.getKey("err-rsa")).kid, rsa.kid);
  });
});

describe("LoginError and the PIN", () => {
  test("a wrong PIN is refused even while another Hsm is logged in to the same token", async () => {
    const error = await caught(() => openHsm({ module: hsm.info.module, token: hsm.info.label, pin: "wrong-pin-0000" }).then((h) => h.close()));
    expectHsmError(error, LoginError, "ERR_HSM_PIN_INCORRECT");
  });

  test("no error message, stack, cause or inspection contains the PIN", () => {
    assert.ok(seen.length > 20, `only ${seen.length} errors collected`);
    for (const error of seen) {
      const texts = [String(error), (error as Error).stack ?? "", inspect(error, { depth: 10 }), JSON.stringify(error) ?? ""];
      for (const t of texts) {
        assert.ok(!t.includes(pin), `PIN found in ${(error as Error).name}: ${(error as Error).message}`);
        assert.ok(!t.includes("wrong-pin-0000"), `wrong PIN echoed in ${(error as Error).name}`);
      }
    }
  });

  test("leftovers are zero before the fixture closes", async () => {
    await assertNoLeftovers(hsm);
  });

  test("with no Hsm open: a wrong PIN is LoginError ERR_HSM_PIN_INCORRECT (CKR_PIN_INCORRECT), then the right PIN still opens", async () => {
    await hsm.close();
    const error = expectHsmError(
      await caught(() => openHsm({ module: hsm.info.module, token: hsm.info.label, pin: "wrong-pin-0000" })),
      LoginError,
      "ERR_HSM_PIN_INCORRECT",
    );
    assert.equal(error.ckr, "CKR_PIN_INCORRECT");
    for (const t of [String(error), error.stack ?? "", inspect(error, { depth: 10 })]) {
      assert.ok(!t.includes(pin) && !t.includes("wrong-pin-0000"));
    }
    const again = await openHsm({ module: hsm.info.module, token: hsm.info.label, pinFile: join(fixture.home, "user.pin") });
    try {
      const key = await again.getKey("err-ec");
      const jws = await new jose.CompactSign(new Uint8Array([3])).setProtectedHeader({ alg: "ES256" }).sign(key.privateKey!);
      assert.equal(nodeVerifyCompact(jws, ec.exportPublic()), true);
      await assertNoLeftovers(again);
    } finally {
      await again.close();
    }
  });

  test("a token that needs a PIN, opened without one: LoginError", async () => {
    const saved = { pin: process.env.HSMKEY_PIN, file: process.env.HSMKEY_PIN_FILE };
    delete process.env.HSMKEY_PIN;
    delete process.env.HSMKEY_PIN_FILE;
    try {
      const error = expectHsmError(await caught(() => openHsm({ module: hsm.info.module, token: hsm.info.label })), LoginError, "ERR_HSM_LOGIN");
      assert.match(error.message, /PIN/);
    } finally {
      if (saved.pin !== undefined) process.env.HSMKEY_PIN = saved.pin;
      if (saved.file !== undefined) process.env.HSMKEY_PIN_FILE = saved.file;
    }
  });
});
