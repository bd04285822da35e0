import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HsmError, ModuleLoadError } from "../src/errors.js";
import { embeddedHome, ensureEmbeddedToken, findSoftHsmModule, SOFTHSM2_MODULE_CANDIDATES, type EmbeddedToken } from "../src/pkcs11/embedded.js";
import { acquireModule, loadedModules } from "../src/pkcs11/module.js";

const CKF_TOKEN_INITIALIZED = 0x400;
const CKF_SERIAL_SESSION = 4;
const CKU_USER = 1;

let home: string;
let savedHome: string | undefined;
let savedConf: string | undefined;
let first: EmbeddedToken;

before(() => {
  savedHome = process.env.HSMKEY_HOME;
  savedConf = process.env.SOFTHSM2_CONF;
  home = mkdtempSync(join(tmpdir(), "hsmkey-embedded-"));
  process.env.HSMKEY_HOME = home;
});

after(() => {
  if (savedHome === undefined) delete process.env.HSMKEY_HOME;
  else process.env.HSMKEY_HOME = savedHome;
  if (savedConf === undefined) delete process.env.SOFTHSM2_CONF;
  else process.env.SOFTHSM2_CONF = savedConf;
  rmSync(home, { recursive: true, force: true });
});

test("SoftHSM2 is installed for the tests", () => {
  assert.ok(findSoftHsmModule(), "no SoftHSM2 module found");
});

test("scripts/ensure-softhsm.mjs (run before anything is built) looks for the module where the library does", () => {
  const script = readFileSync(new URL("../scripts/ensure-softhsm.mjs", import.meta.url), "utf8");
  const list = /const CANDIDATES = \[([^\]]*)\]/.exec(script)?.[1] ?? "";
  assert.deepEqual([...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]), SOFTHSM2_MODULE_CANDIDATES);
});

test("embeddedHome follows HSMKEY_HOME", () => {
  assert.equal(embeddedHome(), home);
});

test("first call creates the token, PIN files and configuration", () => {
  first = ensureEmbeddedToken();
  assert.equal(first.created, true);
  assert.equal(first.home, home);
  assert.equal(first.token, "hsmkey-dev");
  assert.match(first.pin, /^[0-9a-f]{16}$/);
  assert.equal(first.module, findSoftHsmModule());
  assert.equal(first.configPath, join(home, "softhsm2.conf"));
  assert.equal(process.env.SOFTHSM2_CONF, first.configPath);

  assert.equal(statSync(home).mode & 0o777, 0o700);
  assert.equal(statSync(join(home, "user.pin")).mode & 0o777, 0o600);
  assert.equal(statSync(join(home, "so.pin")).mode & 0o777, 0o600);
  assert.equal(readFileSync(join(home, "user.pin"), "utf8").trim(), first.pin);
  const soPin = readFileSync(join(home, "so.pin"), "utf8").trim();
  assert.match(soPin, /^[0-9a-f]{16}$/);
  assert.notEqual(soPin, first.pin);

  const conf = readFileSync(first.configPath, "utf8");
  assert.match(conf, new RegExp(`^directories\\.tokendir = ${join(home, "tokens").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
  assert.match(conf, /^objectstore\.backend = file$/m);
  assert.match(readFileSync(join(home, "README.txt"), "utf8"), /not an HSM/);
  assert.deepEqual(loadedModules(), [], "ensureEmbeddedToken must release the module");
});

test("second call finds the token: created=false, same PIN", () => {
  const second = ensureEmbeddedToken();
  assert.equal(second.created, false);
  assert.equal(second.pin, first.pin);
  assert.equal(second.token, first.token);
  assert.deepEqual(loadedModules(), []);
});

test("the token is visible with its label and the stored PIN logs in", () => {
  const loaded = acquireModule({ path: first.module });
  try {
    const lib = loaded.lib;
    const slots = lib.C_GetSlotList(true).filter((slot) => {
      const info = lib.C_GetTokenInfo(slot);
      return (info.flags & CKF_TOKEN_INITIALIZED) !== 0 && info.label.trim() === "hsmkey-dev";
    });
    assert.equal(slots.length, 1, "exactly one embedded token");
    const info = lib.C_GetTokenInfo(slots[0]!);
    assert.equal(info.label, "hsmkey-dev".padEnd(32, " "));
    const session = lib.C_OpenSession(slots[0]!, CKF_SERIAL_SESSION);
    try {
      lib.C_Login(session, CKU_USER, first.pin);
      lib.C_Logout(session);
      assert.throws(() => lib.C_Login(session, CKU_USER, "0000000000000000"), /CKR_PIN_INCORRECT/);
    } finally {
      lib.C_CloseSession(session);
    }
  } finally {
    loaded.release();
  }
  assert.deepEqual(loadedModules(), []);
});

test("a second label in the same home gets its own token, with the home's PIN; the first token's PIN is kept", () => {
  const other = ensureEmbeddedToken({ label: "hsmkey-other" });
  assert.equal(other.created, true);
  assert.equal(other.token, "hsmkey-other");
  assert.equal(other.pin, first.pin);
  assert.equal(ensureEmbeddedToken({ label: "hsmkey-other" }).created, false);
  assert.equal(readFileSync(join(home, "user.pin"), "utf8").trim(), first.pin);
  // Both tokens log in with the one PIN in user.pin.
  const loaded = acquireModule({ path: first.module });
  try {
    const lib = loaded.lib;
    const labels: string[] = [];
    for (const slot of lib.C_GetSlotList(true)) {
      const info = lib.C_GetTokenInfo(slot);
      if ((info.flags & CKF_TOKEN_INITIALIZED) === 0) continue;
      labels.push(info.label.trim());
      const session = lib.C_OpenSession(slot, CKF_SERIAL_SESSION);
      try {
        lib.C_Login(session, CKU_USER, first.pin);
        lib.C_Logout(session);
      } finally {
        lib.C_CloseSession(session);
      }
    }
    assert.deepEqual(labels.sort(), ["hsmkey-dev", "hsmkey-other"]);
  } finally {
    loaded.release();
  }
});

/**
 * Run `fn` with a home of its own, then remove it and point SoftHSM back at the suite's home
 * (ensureEmbeddedToken sets SOFTHSM2_CONF to the home it opens).
 */
function inScratchHome(prefix: string, fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    process.env.SOFTHSM2_CONF = join(home, "softhsm2.conf");
  }
}

test("a token store whose PIN files were deleted is an error naming them, and no new PIN or token is made", () => {
  inScratchHome("hsmkey-nopin-", (dir) => {
    ensureEmbeddedToken({ home: dir });
    rmSync(join(dir, "user.pin"));
    assert.throws(
      () => ensureEmbeddedToken({ home: dir, label: "hsmkey-new" }),
      (error: unknown) => error instanceof HsmError && /PIN files \(user\.pin, so\.pin\) are missing/.test(error.message),
    );
    assert.equal(existsSync(join(dir, "user.pin")), false);
    assert.equal(readdirSync(join(dir, "tokens")).length, 1);
    assert.deepEqual(loadedModules(), []);
  });
});

test("a token store on disk that SoftHSM does not list is an error, not a reason to create a token", () => {
  // A token directory SoftHSM cannot read stands for one it misread while another process wrote it.
  inScratchHome("hsmkey-misread-", (dir) => {
    const made = ensureEmbeddedToken({ home: dir });
    mkdirSync(join(dir, "tokens", "unreadable"));
    assert.throws(
      () => ensureEmbeddedToken({ home: dir, label: "hsmkey-new" }),
      (error: unknown) => error instanceof HsmError && error.code === "ERR_HSM" && /lists 1 of the 2 tokens/.test(error.message),
    );
    assert.equal(readFileSync(join(dir, "user.pin"), "utf8").trim(), made.pin);
    assert.deepEqual(readdirSync(join(dir, "tokens")).length, 2);
    assert.deepEqual(loadedModules(), []);
  });
});

test("a missing SoftHSM module gives a ModuleLoadError that says what to install", () => {
  inScratchHome("hsmkey-nomodule-", (dir) => {
    assert.throws(
      () => ensureEmbeddedToken({ home: dir, module: join(dir, "missing-libsofthsm2.so") }),
      (error: unknown) =>
        error instanceof ModuleLoadError &&
        error.code === "ERR_HSM_MODULE_LOAD" &&
        /apt-get install softhsm2/.test(error.message) &&
        /brew install softhsm/.test(error.message) &&
        /HSMKEY_MODULE/.test(error.message),
    );
  });
});

test("labels longer than 32 bytes are rejected", () => {
  assert.throws(() => ensureEmbeddedToken({ label: "x".repeat(33) }), /32 bytes/);
});
