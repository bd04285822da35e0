import { test, after } from "node:test";
import assert from "node:assert/strict";
import { probeAlgorithms } from "../src/index.js";
import { freshHsm } from "./helpers/token.js";

const fixture = await freshHsm();
after(() => fixture.close());

test("the live probe finds what SoftHSM 2.6 can and cannot do, and leaves nothing behind", async () => {
  const results = await probeAlgorithms(fixture.hsm.token);
  const unsupported = results.filter((r) => !r.supported).map((r) => r.alg);
  assert.deepEqual(unsupported, ["RSA-OAEP-256", "RSA-OAEP-384", "RSA-OAEP-512"]);
  const oaep256 = results.find((r) => r.alg === "RSA-OAEP-256")!;
  assert.match(oaep256.reason!, /CKR_ARGUMENTS_BAD|CKR_MECHANISM_PARAM_INVALID/);
  assert.match(oaep256.reason!, /token 'hsmkey-dev'/);
  for (const alg of ["RS256", "PS512", "ES512", "EdDSA", "HS384", "RSA-OAEP", "ECDH-ES+A256KW", "A192KW", "A256GCMKW", "dir"]) {
    assert.equal(results.find((r) => r.alg === alg)?.supported, true, alg);
  }
  const stats = await fixture.hsm.stats();
  assert.deepEqual(stats.objects, fixture.baseline);
  assert.equal(stats.sessions.busy, 0);
});
