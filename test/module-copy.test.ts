/**
 * Token threads with module instances of their own (src/pkcs11/module-copy.ts). On SoftHSM each
 * token thread loads a copy of the library, logs in by itself and finds keys by their identity.
 * Results must be right; the copies must really be loaded and their files gone; session keys (which
 * another instance cannot see) must still be served; a key whose identity matches two objects must
 * never be signed for by the other one; and where no instance of its own can be had (no copy can be
 * made, or the copy is no separate instance) the threads must share the process's instance, which
 * must survive.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, verify as nodeVerify, webcrypto, type JsonWebKey as NodeJwk } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import { freshHsm, leftovers } from "./helpers/token.js";
import { faultyModule } from "./helpers/fault.js";
import { InvalidInputError, openHsm, type Hsm, type HsmKey } from "../src/index.js";
import { CKA, CKM, CKO } from "../src/pkcs11/constants.js";

const fixture = await freshHsm();
const { hsm } = fixture;
after(() => fixture.close());
const pin = readFileSync(join(fixture.home, "user.pin"), "utf8").split("\n")[0]!;

/** Paths of the module copies mapped into this process, and whether each file still exists. */
function mappedCopies(): { path: string; onDisk: boolean }[] {
  const paths = new Set<string>();
  for (const line of readFileSync("/proc/self/maps", "utf8").split("\n")) {
    const match = /(\/\S*hsmkey-module-[^/\s]+\/\S+)/.exec(line);
    if (match) paths.add(match[1]!);
  }
  return [...paths].map((path) => ({ path, onDisk: existsSync(path) }));
}

/** `count` concurrent ES256 signatures of distinct messages, each checked by node:crypto. */
async function signAndVerify(signer: Hsm, key: HsmKey, count: number): Promise<void> {
  const publicKey = createPublicKey({ key: key.exportPublic() as unknown as NodeJwk, format: "jwk" });
  const messages = Array.from({ length: count }, (_, i) => new TextEncoder().encode(`message ${i}`));
  const signatures = await Promise.all(messages.map((m) => signer.crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey!, m)));
  signatures.forEach((signature, i) => {
    const ok = nodeVerify("sha256", messages[i]!, { key: publicKey, dsaEncoding: "ieee-p1363" }, Buffer.from(signature));
    assert.equal(ok, true, `signature ${i} does not verify`);
  });
}

test("SoftHSM: token threads load copies of the module (mapped, their files deleted), and 3,000 concurrent ES256 signatures verify", async () => {
  const key = await hsm.generateKey("ES256", { label: "copy-es256" });
  await signAndVerify(hsm, key, 3000);
  assert.equal(hsm.token.threads.ownInstances, true, "SoftHSM's token threads should have instances of their own");
  assert.equal(hsm.token.threads.ownFailure, undefined);
  assert.ok(hsm.token.threadStats().serving >= 1, "no token thread was started");
  const copies = mappedCopies();
  assert.ok(copies.length >= 1, "no copy of the module is mapped");
  assert.deepEqual(copies.filter((c) => c.onDisk), [], "a copy's file was left on disk");
  assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  await hsm.deleteKey("copy-es256");
});

test("session keys (made by hsm.crypto.subtle, invisible to another instance) are still signed for under load", async () => {
  const pair = (await hsm.crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"])) as CryptoKeyPair;
  const jwk = await hsm.crypto.subtle.exportKey("jwk", pair.publicKey);
  const publicKey = await webcrypto.subtle.importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const messages = Array.from({ length: 1000 }, (_, i) => new TextEncoder().encode(`session ${i}`));
  const params = { name: "ECDSA", hash: "SHA-256" };
  const signatures = await Promise.all(messages.map((m) => hsm.crypto.subtle.sign(params, pair.privateKey, m)));
  for (const [i, signature] of signatures.entries()) {
    assert.equal(await webcrypto.subtle.verify(params, publicKey, signature, messages[i]!), true, `signature ${i} does not verify`);
  }
  assert.equal(hsm.token.threads.ownInstances, true);
});

test("a key whose identity (class, id, label) matches two objects is never signed for by the other one, and its threads are not asked again", async () => {
  const key = await hsm.generateKey("ES256", { label: "twin" });
  const id = Buffer.from(key.objects.privateKey!.info.id!);
  // A second key pair with the same label and CKA_ID, made behind hsmkey's back.
  const lib = hsm.token.lib;
  const session = hsm.token.pool.openSession();
  const twin = lib.C_GenerateKeyPair(
    session,
    { mechanism: CKM.EC_KEY_PAIR_GEN },
    [{ type: CKA.TOKEN, value: true }, { type: CKA.EC_PARAMS, value: Buffer.from("06082a8648ce3d030107", "hex") }, { type: CKA.VERIFY, value: true }],
    [
      { type: CKA.TOKEN, value: true }, { type: CKA.PRIVATE, value: true }, { type: CKA.SIGN, value: true },
      { type: CKA.LABEL, value: "twin" }, { type: CKA.ID, value: id },
    ],
  );
  try {
    // Every signature must verify with the first key's public key.
    await signAndVerify(hsm, key, 1000);
    // The threads' verdict is kept: later operations with the key do not ask a thread again.
    const threadKey = key.objects.privateKey!.threadKey(key.objects.privateKey!.cachedHandle()!);
    assert.equal(threadKey.ambiguous, true, "the key was not marked ambiguous");
    assert.equal(hsm.token.threads.serves(threadKey, true), false);
    await signAndVerify(hsm, key, 200);
  } finally {
    lib.C_DestroyObject(session, twin.privateKey);
    lib.C_DestroyObject(session, twin.publicKey);
    lib.C_CloseSession(session);
    await hsm.deleteKey("twin");
  }
  lib.C_FindObjectsInit(hsm.token.anchor, [{ type: CKA.CLASS, value: CKO.PRIVATE_KEY }, { type: CKA.LABEL, value: "twin" }]);
  const remaining = lib.C_FindObjects(hsm.token.anchor, 4);
  lib.C_FindObjectsFinal(hsm.token.anchor);
  assert.equal(remaining.length, 0);
});

test('threadModule "shared" keeps the token threads on the process\'s instance', async () => {
  const shared = await openHsm({ home: fixture.home, threadModule: "shared" });
  try {
    const key = await shared.generateKey("ES256", { label: "shared-es256" });
    await signAndVerify(shared, key, 1000);
    assert.equal(shared.token.threads.ownInstances, false);
    assert.ok(shared.token.threadStats().serving >= 1, "no token thread was started");
    await shared.deleteKey("shared-es256");
  } finally {
    await shared.close();
  }
});

test("no copy can be made (TMPDIR does not exist): the threads share the process's instance, and say why", async () => {
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = join(fixture.home, "no-such-directory");
  const other = await openHsm({ home: fixture.home });
  try {
    const key = await other.generateKey("ES256", { label: "no-copy" });
    await signAndVerify(other, key, 1000);
    assert.equal(other.token.threads.ownInstances, false);
    assert.match(other.token.threads.ownFailure ?? "", /^no copy of the module could be made: ENOENT/);
    assert.ok(other.token.threadStats().serving >= 1, "no token thread was started");
    await other.deleteKey("no-copy");
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    await other.close();
  }
});

test('a copy that is no instance of its own (a shim forwarding to the SoftHSM already loaded), asked for with "copy": the threads share, and the shared instance lives on', async () => {
  const faulty = faultyModule();
  try {
    const shim = await openHsm({ module: faulty.path, token: hsm.info.label, pin, threadModule: "copy" });
    try {
      const key = await shim.getKey("copy-check", { alg: "ES256" }).catch(() => shim.generateKey("ES256", { label: "copy-check" }));
      await signAndVerify(shim, key, 500);
      assert.equal(shim.token.threads.ownInstances, false);
      assert.match(shim.token.threads.ownFailure ?? "", /not a separate instance/);
      await shim.deleteKey("copy-check");
    } finally {
      await shim.close();
    }
  } finally {
    faulty.dispose();
  }
  // The copy's worker must not have finalized SoftHSM under the fixture.
  const key = await hsm.generateKey("ES256", { label: "after-shim" });
  await signAndVerify(hsm, key, 200);
  await hsm.deleteKey("after-shim");
});

test("the PIN is in no inspection of the token or its threads", () => {
  for (const text of [inspect(hsm, { depth: 20, showHidden: true }), inspect(hsm.token, { depth: 20, showHidden: true }), inspect(hsm.token.threads, { depth: 20, showHidden: true })]) {
    assert.equal(text.includes(pin), false);
  }
});

test("an unknown threadModule is an InvalidInputError naming the choices", async () => {
  await assert.rejects(openHsm({ home: fixture.home, threadModule: "both" as never }), (error: unknown) => {
    assert.ok(error instanceof InvalidInputError);
    assert.equal(error.code, "ERR_HSM_INVALID_INPUT");
    assert.match(error.message, /threadModule.*auto, shared, copy.*'both'/);
    return true;
  });
  process.env.HSMKEY_THREAD_MODULE = "twice";
  try {
    await assert.rejects(openHsm({ home: fixture.home }), /HSMKEY_THREAD_MODULE must be one of auto, shared, copy, got 'twice'/);
  } finally {
    delete process.env.HSMKEY_THREAD_MODULE;
  }
});

test("closing the Hsm ends its threads and unloads their copies, and nothing the process still uses", async () => {
  const before = mappedCopies().length;
  const other = await openHsm({ home: fixture.home });
  const key = await other.generateKey("ES256", { label: "closing" });
  await signAndVerify(other, key, 1000);
  assert.equal(other.token.threads.ownInstances, true);
  await other.deleteKey("closing");
  await other.close();
  assert.deepEqual(other.token.threadStats(), { serving: 0, stalled: 0, pending: 0 });
  assert.equal(mappedCopies().length, before, "a closed thread's copy of the module is still mapped");
  // The fixture, on the same module, still signs.
  const still = await hsm.generateKey("ES256", { label: "still" });
  await signAndVerify(hsm, still, 100);
  await hsm.deleteKey("still");
});

test("a thread with its own instance is replaced after 20,000 throwaway objects (SoftHSM keeps destroyed session objects until C_Finalize); every result stays right", async () => {
  const key = await hsm.generateKey("ECDH-ES+A256KW", { label: "recycle-ecdh" });
  const ownPublic = await webcrypto.subtle.importKey("jwk", key.exportPublic(), { name: "ECDH", namedCurve: "P-256" }, false, []);
  const peer = (await webcrypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"])) as CryptoKeyPair;
  const expected = Buffer.from(await webcrypto.subtle.deriveBits({ name: "ECDH", public: ownPublic }, peer.privateKey, 256));
  const before = hsm.token.threads.recycled;
  const sessionObjects = (await hsm.stats()).objects.session; // the session keys of an earlier test
  let done = 0;
  let wrong = 0;
  // The derivations spread over the threads: run until one of them passed the mark (at most 100,000).
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (hsm.token.threads.recycled === before && done < 100_000) {
      done++;
      const secret = await hsm.crypto.subtle.deriveBits({ name: "ECDH", public: peer.publicKey }, key.privateKey!, 256);
      if (!expected.equals(Buffer.from(secret))) wrong++;
    }
  }));
  assert.equal(wrong, 0, "a derived secret differs from node:crypto's");
  assert.ok(hsm.token.threads.recycled > before, "no token thread was replaced");
  // The replacement serves: more derivations, still right.
  const again = await Promise.all(Array.from({ length: 200 }, () => hsm.crypto.subtle.deriveBits({ name: "ECDH", public: peer.publicKey }, key.privateKey!, 256)));
  for (const secret of again) assert.deepEqual(Buffer.from(secret), expected);
  assert.deepEqual(await leftovers(hsm), { sessionObjects, busySessions: 0 });
  await hsm.deleteKey("recycle-ecdh");
});
