/**
 * Time limits, through the fault-injecting module in front of SoftHSM2: a token call that hangs is
 * rejected with ERR_HSM_TIMEOUT instead of hanging its caller, its session is retired once the call
 * returns, and the Hsm keeps working.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createPublicKey, verify as nodeVerify, type JsonWebKey as NodeJwk } from "node:crypto";
import { freshHsm, leftovers } from "./helpers/token.js";
import { faultyModule, type FaultyModule } from "./helpers/fault.js";
import { openHsm, SessionError, type Hsm, type HsmKey } from "../src/index.js";

let faulty: FaultyModule;
let hsm: Hsm;
let home: string;
let rsa: HsmKey;
const data = new TextEncoder().encode("time limits");

before(async () => {
  const fixture = await freshHsm();
  home = fixture.home;
  const label = fixture.hsm.info.label;
  await fixture.hsm.generateKey("RS256", { label: "rsa" });
  await fixture.hsm.close();
  const pin = readFileSync(join(home, "user.pin"), "utf8").split("\n")[0]!;
  faulty = faultyModule();
  hsm = await openHsm({ module: faulty.path, token: label, pin, operationTimeoutMs: 300, maxSessions: 2 });
  rsa = await hsm.getKey("rsa", { alg: "RS256" });
});

after(async () => {
  faulty?.clearFault();
  await hsm?.close();
  faulty?.dispose();
  if (home) rmSync(home, { recursive: true, force: true });
});

function sign(): Promise<ArrayBuffer> {
  return hsm.crypto.subtle.sign("RSASSA-PKCS1-v1_5", rsa.privateKey!, data);
}

function verifies(signature: ArrayBuffer): boolean {
  const key = createPublicKey({ key: rsa.exportPublic() as unknown as NodeJwk, format: "jwk" });
  return nodeVerify("sha256", data, key, Buffer.from(signature));
}

test("a token call that hangs past operationTimeoutMs is rejected with ERR_HSM_TIMEOUT", async () => {
  faulty.setFault({ delayFunction: "C_Sign", delayMs: 1000 });
  const started = Date.now();
  await assert.rejects(sign(), (e: unknown) => {
    assert.ok(e instanceof SessionError, String(e));
    assert.equal(e.code, "ERR_HSM_TIMEOUT");
    assert.match(e.message, /longer than 300 ms/);
    return true;
  });
  const waited = Date.now() - started;
  assert.ok(waited >= 250 && waited < 900, `rejected after ${waited} ms`);
  faulty.clearFault();
  // RSA signs whole on a token thread. The hung call keeps that thread (and its session) until the
  // token answers; the thread takes no more work, and ends when the call returns.
  assert.deepEqual((await hsm.stats()).threads, { serving: 0, stalled: 1, pending: 0 });
  const opened = faulty.calls("C_OpenSession");
  assert.equal(verifies(await sign()), true, "a fresh thread signs meanwhile");
  assert.equal(faulty.calls("C_OpenSession"), opened + 1, "the fresh thread opened its own session");
  const closed = faulty.calls("C_CloseSession");
  await sleep(900);
  assert.deepEqual((await hsm.stats()).threads, { serving: 1, stalled: 0, pending: 0 });
  assert.equal(faulty.calls("C_CloseSession"), closed + 1, "the stalled thread closed its session when it ended");
  assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  assert.equal(verifies(await sign()), true);
});

test("waiting for a session counts against the limit too", async () => {
  faulty.setFault({ delayFunction: "C_Sign", delayMs: 700 });
  const results = await Promise.allSettled([sign(), sign(), sign()]);
  faulty.clearFault();
  assert.deepEqual(
    results.map((r) => (r.status === "rejected" ? (r.reason as SessionError).code : "ok")),
    ["ERR_HSM_TIMEOUT", "ERR_HSM_TIMEOUT", "ERR_HSM_TIMEOUT"],
  );
  await sleep(1600);
  assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  assert.equal(verifies(await sign()), true);
});

test("a session that died while idle is noticed before it is lent again, and replaced", async () => {
  const { SessionPool } = await import("../src/pkcs11/pool.js");
  const token = hsm.token;
  const pool = new SessionPool(token.lib, token.slot, "test pool", { idleCheckMs: 0 });
  try {
    const first = await pool.use((session) => session);
    token.lib.C_CloseSession(first); // behind the pool's back, as a token restart would
    // Handed the dead session, C_GetSessionInfo would throw CKR_SESSION_HANDLE_INVALID.
    const state = await pool.use((session) => token.lib.C_GetSessionInfo(session).state);
    assert.equal(typeof state, "number");
    assert.deepEqual(pool.stats(), { open: 1, idle: 1, busy: 0, waiting: 0 });
  } finally {
    pool.close();
  }
});
