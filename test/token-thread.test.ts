/**
 * The signing thread: under load, fast signatures are batched onto a worker thread with its own
 * session. Every signature must still verify, the thread must really be used, and its session must
 * be closed when the thread goes (recovery, close): sessions belong to the process, not the thread.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, verify as nodeVerify, type JsonWebKey as NodeJwk } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freshHsm, leftovers } from "./helpers/token.js";
import { faultyModule } from "./helpers/fault.js";
import { openHsm } from "../src/index.js";

const fixture = await freshHsm();
const { hsm } = fixture;
after(() => fixture.close());


for (const [alg, params, hash] of [
  ["ES256", { name: "ECDSA", hash: "SHA-256" }, "sha256"],
  ["EdDSA", { name: "Ed25519" }, null],
] as const) {
  test(`${alg}: 3,000 concurrent signatures, batched onto the signing thread, all verify`, async () => {
    const key = await hsm.generateKey(alg, { label: `thread-${alg}` });
    const publicKey = createPublicKey({ key: key.exportPublic() as unknown as NodeJwk, format: "jwk" });
    let maxLoad = 0;
    let sampling = true;
    const sample = () => {
      maxLoad = Math.max(maxLoad, hsm.token.threadLoad());
      if (sampling) setImmediate(sample);
    };
    sample();
    const messages = Array.from({ length: 3000 }, (_, i) => new TextEncoder().encode(`message ${i}`));
    const signatures = await Promise.all(messages.map((m) => hsm.crypto.subtle.sign(params, key.privateKey!, m)));
    sampling = false;
    assert.ok(maxLoad > 0, "the signing thread was never used");
    signatures.forEach((signature, i) => {
      const ok = nodeVerify(hash, messages[i]!, { key: publicKey, dsaEncoding: "ieee-p1363" }, Buffer.from(signature));
      assert.equal(ok, true, `signature ${i} does not verify`);
    });
    assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  });
}

test("every session opened, the signing thread's included, is closed again: after a recovery and after close", async () => {
  // Count C_OpenSession/C_CloseSession through the fault-injecting module (no faults set).
  const label = hsm.info.label;
  const pin = readFileSync(join(fixture.home, "user.pin"), "utf8").split("\n")[0]!;
  await hsm.close();
  const faulty = faultyModule();
  try {
    const counted = await openHsm({ module: faulty.path, token: label, pin });
    const key = await counted.getKey("thread-ES256", { alg: "ES256" });
    const load = () => Promise.all(Array.from({ length: 2000 }, (_, i) => counted.crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey!, new Uint8Array([i & 0xff]))));
    await load();
    assert.ok(faulty.calls("C_OpenSession") >= 3, "anchor, pooled and thread sessions");
    await counted.token.recover();
    await load();
    await counted.close();
    assert.equal(faulty.calls("C_CloseSession"), faulty.calls("C_OpenSession"), "a session was left open");
  } finally {
    faulty.dispose();
  }
});
