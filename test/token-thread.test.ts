/**
 * Token threads: under load, fast signatures are batched onto worker threads with their own
 * sessions, and slow operations (RSA signing, RSA-OAEP decryption, a slow token's derive, wrap and
 * unwrap) run there whole, Init call and carrier objects included. Every result must still be right, the threads must really be used, the event loop must
 * not wait for a slow Init, and every thread's session must be closed when the thread goes
 * (recovery, close): sessions belong to the process, not the thread.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { constants, createPublicKey, publicEncrypt, verify as nodeVerify, type JsonWebKey as NodeJwk } from "node:crypto";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { freshHsm, leftovers } from "./helpers/token.js";
import { CKR, faultyModule, type FaultyModule } from "./helpers/fault.js";
import { InvalidInputError, openHsm, type Hsm } from "../src/index.js";

const fixture = await freshHsm();
const { hsm } = fixture;
after(() => fixture.close());

/**
 * Open the fixture's token through the fault-injecting module, run `fn`, close, run `afterClose`
 * (while the module's call trace is still there), dispose.
 */
async function throughFaultyModule(fn: (faultyHsm: Hsm, faulty: FaultyModule) => Promise<void>, afterClose?: (faulty: FaultyModule) => void): Promise<void> {
  const pin = readFileSync(join(fixture.home, "user.pin"), "utf8").split("\n")[0]!;
  const faulty = faultyModule();
  try {
    const faultyHsm = await openHsm({ module: faulty.path, token: hsm.info.label, pin });
    try {
      await fn(faultyHsm, faulty);
    } finally {
      await faultyHsm.close();
    }
    afterClose?.(faulty);
  } finally {
    faulty.dispose();
  }
}


for (const [alg, params, hash] of [
  ["ES256", { name: "ECDSA", hash: "SHA-256" }, "sha256"],
  ["EdDSA", { name: "Ed25519" }, null],
] as const) {
  test(`${alg}: 3,000 concurrent signatures, batched onto token threads, all verify`, async () => {
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
    assert.ok(maxLoad > 0, "no token thread was used");
    signatures.forEach((signature, i) => {
      const ok = nodeVerify(hash, messages[i]!, { key: publicKey, dsaEncoding: "ieee-p1363" }, Buffer.from(signature));
      assert.equal(ok, true, `signature ${i} does not verify`);
    });
    assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  });
}

test("PS256 signatures (mechanism parameters) and RSA-OAEP decryptions run on token threads, 200 at once, all right", async () => {
  const key = await hsm.generateKey("PS256", { label: "thread-rsa" });
  const publicKey = createPublicKey({ key: key.exportPublic() as unknown as NodeJwk, format: "jwk" });
  const messages = Array.from({ length: 200 }, (_, i) => new TextEncoder().encode(`message ${i}`));
  const signatures = await Promise.all(messages.map((m) => hsm.crypto.subtle.sign({ name: "RSA-PSS", saltLength: 32 }, key.privateKey!, m)));
  assert.ok(hsm.token.threadStats().serving >= 1, "no token thread was started");
  signatures.forEach((signature, i) => {
    const ok = nodeVerify("sha256", messages[i]!, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, Buffer.from(signature));
    assert.equal(ok, true, `signature ${i} does not verify`);
  });
  // SoftHSM decrypts OAEP with SHA-1 only (see the README), so RSA-OAEP it is.
  const oaep = (await hsm.getKey("thread-rsa", { alg: "RSA-OAEP" })).as("RSA-OAEP");
  const oaepPublic = createPublicKey({ key: oaep.exportPublic() as unknown as NodeJwk, format: "jwk" });
  const ciphertexts = messages.map((m) => publicEncrypt({ key: oaepPublic, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, m));
  const plaintexts = await Promise.all(ciphertexts.map((c) => hsm.crypto.subtle.decrypt({ name: "RSA-OAEP" }, oaep.privateKey!, c)));
  plaintexts.forEach((p, i) => assert.deepEqual(Buffer.from(p), Buffer.from(messages[i]!)));
  assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
  await hsm.deleteKey("thread-rsa");
});

test("every session opened, the token threads' included, is closed again: after a recovery and after close", async () => {
  // Count C_OpenSession/C_CloseSession through the fault-injecting module (no faults set).
  await hsm.close();
  await throughFaultyModule(async (counted, faulty) => {
    const key = await counted.getKey("thread-ES256", { alg: "ES256" });
    const load = () => Promise.all(Array.from({ length: 2000 }, (_, i) => counted.crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey!, new Uint8Array([i & 0xff]))));
    await load();
    assert.ok(faulty.calls("C_OpenSession") >= 3, "anchor, pooled and thread sessions");
    await counted.token.recover();
    await load();
  }, (faulty) => assert.equal(faulty.calls("C_CloseSession"), faulty.calls("C_OpenSession"), "a session was left open"));
});

test("a slow C_SignInit (300 ms, as NSS's RSA or a network HSM's round trip) does not block the event loop", async () => {
  await throughFaultyModule(async (slow, faulty) => {
    const key = await slow.generateKey("RS256", { label: "slow-init" });
    faulty.setFault({ delayFunction: "C_SignInit", delayMs: 300 });
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const started = performance.now();
    const signatures = await Promise.all(Array.from({ length: 4 }, (_, i) => slow.crypto.subtle.sign("RSASSA-PKCS1-v1_5", key.privateKey!, new Uint8Array([i]))));
    const elapsed = performance.now() - started;
    delay.disable();
    faulty.clearFault();
    assert.ok(elapsed >= 300, `the delay was not applied (${elapsed} ms)`);
    assert.ok(delay.max / 1e6 < 150, `the event loop waited ${delay.max / 1e6} ms for a C_SignInit`);
    const publicKey = createPublicKey({ key: key.exportPublic() as unknown as NodeJwk, format: "jwk" });
    signatures.forEach((s, i) => assert.equal(nodeVerify("sha256", new Uint8Array([i]), publicKey, Buffer.from(s)), true));
    await slow.deleteKey("slow-init");
  });
});

test("a slow C_DeriveKey, C_UnwrapKey or C_WrapKey (100 ms each, as a network HSM's round trip) runs on token threads: the event loop stays free, results match node:crypto", async () => {
  const { webcrypto } = await import("node:crypto");
  const native = webcrypto.subtle;
  await throughFaultyModule(async (slow, faulty) => {
    const ecdh = await slow.generateKey("ECDH-ES+A256KW", { label: "slow-ecdh" });
    const ecdhPublic = await native.importKey("jwk", ecdh.exportPublic(), { name: "ECDH", namedCurve: "P-256" }, false, []);
    const peers = await Promise.all([0, 1, 2, 3].map(() => native.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]) as Promise<CryptoKeyPair>));
    const kwBytes = webcrypto.getRandomValues(new Uint8Array(32));
    const kw = await slow.importKey({ kty: "oct", k: Buffer.from(kwBytes).toString("base64url") }, { alg: "A256KW", label: "slow-kw" });
    const nativeKw = await native.importKey("raw", kwBytes, "AES-KW", false, ["wrapKey", "unwrapKey"]);
    const ceks = await Promise.all([0, 1, 2, 3].map(() => native.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt"])));
    const wrappedByNode = await Promise.all(ceks.map((cek) => native.wrapKey("raw", cek, nativeKw, "AES-KW")));
    const cases: [string, () => Promise<ArrayBuffer>[], (results: ArrayBuffer[]) => Promise<void>][] = [
      [
        "C_DeriveKey",
        () => peers.map((peer) => slow.crypto.subtle.deriveBits({ name: "ECDH", public: peer.publicKey }, ecdh.privateKey!, 256)),
        async (secrets) => {
          for (const [i, peer] of peers.entries()) {
            assert.deepEqual(Buffer.from(secrets[i]!), Buffer.from(await native.deriveBits({ name: "ECDH", public: ecdhPublic }, peer.privateKey, 256)));
          }
        },
      ],
      [
        "C_WrapKey",
        () => ceks.map((cek) => slow.crypto.subtle.wrapKey("raw", cek, kw.secretKey!, "AES-KW")),
        async (wrapped) => wrapped.forEach((w, i) => assert.deepEqual(Buffer.from(w), Buffer.from(wrappedByNode[i]!))),
      ],
      [
        "C_UnwrapKey",
        () =>
          wrappedByNode.map(async (w) => {
            const cek = await slow.crypto.subtle.unwrapKey("raw", w, kw.secretKey!, "AES-KW", "AES-GCM", true, ["encrypt"]);
            return native.exportKey("raw", cek);
          }),
        async (raws) => {
          for (const [i, cek] of ceks.entries()) assert.deepEqual(Buffer.from(raws[i]!), Buffer.from(await native.exportKey("raw", cek)));
        },
      ],
    ];
    for (const [fn, run, check] of cases) {
      faulty.setFault({ delayFunction: fn, delayMs: 100 });
      const delay = monitorEventLoopDelay({ resolution: 5 });
      delay.enable();
      const started = performance.now();
      const results = await Promise.all(run());
      const elapsed = performance.now() - started;
      delay.disable();
      faulty.clearFault();
      assert.ok(elapsed >= 100, `${fn}: the delay was not applied (${elapsed} ms)`);
      assert.ok(delay.max / 1e6 < 60, `${fn}: the event loop waited ${delay.max / 1e6} ms`);
      await check(results);
    }
    assert.ok(slow.token.threadStats().serving >= 1);
    assert.deepEqual(await leftovers(slow), { sessionObjects: 0, busySessions: 0 });
    await slow.deleteKey("slow-ecdh");
    await slow.deleteKey("slow-kw");
  });
});

test("a token thread that cannot open its session: its jobs run on the ordinary path, and no thread is tried for a while", async () => {
  await throughFaultyModule(async (counted, faulty) => {
    const key = await counted.generateKey("RS256", { label: "no-thread" });
    const publicKey = createPublicKey({ key: key.exportPublic() as unknown as NodeJwk, format: "jwk" });
    const sign = (i: number) => counted.crypto.subtle.sign("RSASSA-PKCS1-v1_5", key.privateKey!, new Uint8Array([i]));
    // The next C_OpenSession is the first token thread's (the pool has an idle session already).
    faulty.setFault({ function: "C_OpenSession", rv: CKR.DEVICE_ERROR, nth: 1 });
    const signatures = await Promise.all([0, 1, 2, 3].map(sign));
    faulty.clearFault();
    signatures.forEach((s, i) => assert.equal(nodeVerify("sha256", new Uint8Array([i]), publicKey, Buffer.from(s)), true));
    assert.equal(faulty.calls("C_OpenSession") >= 3, true, "anchor, pooled and the thread's failed open");
    assert.equal(counted.token.threads.usable, false);
    const opened = faulty.calls("C_OpenSession");
    assert.equal(nodeVerify("sha256", new Uint8Array([9]), publicKey, Buffer.from(await sign(9))), true);
    assert.equal(faulty.calls("C_OpenSession"), opened, "a thread was started again at once");
    assert.deepEqual(counted.token.threadStats(), { serving: 0, stalled: 0, pending: 0 });
    await counted.deleteKey("no-thread");
  });
});

test("a token thread kept busy by the token reports itself saturated, and an idle one does not", async () => {
  await throughFaultyModule(async (slow, faulty) => {
    const key = await slow.generateKey("ES256", { label: "busy-share" });
    faulty.setFault({ delayFunction: "C_Sign", delayMs: 3 });
    let seenSaturated = false;
    let sampling = true;
    const sample = () => {
      if (slow.token.threadLoad() > 0 && slow.token.threads.saturated()) seenSaturated = true;
      if (sampling) setTimeout(sample, 5);
    };
    sample();
    // 3 ms per signature and 64 at a time for 300 of them: the threads never wait for work.
    const message = new Uint8Array([1, 2, 3]);
    const params = { name: "ECDSA", hash: "SHA-256" };
    await Promise.all(Array.from({ length: 300 }, () => slow.crypto.subtle.sign(params, key.privateKey!, message)));
    sampling = false;
    faulty.clearFault();
    assert.equal(seenSaturated, true, "the threads never reported themselves saturated under a slow token");
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal(slow.token.threads.saturated(), false, "idle threads reported themselves saturated");
    await slow.deleteKey("busy-share");
  });
});

/** The nice value of every thread of this process, by thread id (Linux: field 19 of /proc/self/task/<tid>/stat). */
function niceByThread(): Map<number, number> {
  const nices = new Map<number, number>();
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      nices.set(Number(tid), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return nices;
}

test(
  "token threads run at a lower CPU priority than the event loop: threadNice (default 5) above the process's, level with threadNice 0",
  { skip: process.platform !== "linux" && "a nice value belongs to a thread only on Linux" },
  async () => {
    const base = niceByThread().get(process.pid)!;
    const lowered = () => [...niceByThread()].filter(([, nice]) => nice === Math.min(19, base + 5)).map(([tid]) => tid);
    // An Hsm of its own: the fixture's is closed by an earlier test.
    const hsm = await openHsm({ home: fixture.home });
    const key = await hsm.generateKey("RS256", { label: "nice-RS256" });
    const message = new Uint8Array([1, 2, 3]);
    const sign = (h: Hsm, k: CryptoKey) => Promise.all(Array.from({ length: 100 }, () => h.crypto.subtle.sign("RSASSA-PKCS1-v1_5", k, message)));
    await sign(hsm, key.privateKey!);
    const serving = hsm.token.threadStats().serving;
    assert.ok(serving > 0, "no token thread was used");
    const ours = lowered();
    assert.equal(ours.length, serving, `${ours.length} threads at nice ${base + 5}, ${serving} token threads`);
    assert.equal(niceByThread().get(process.pid), base, "the event loop's own priority changed");

    const before = new Set(niceByThread().keys());
    const level = await openHsm({ home: fixture.home, threadNice: 0 });
    try {
      const same = await level.getKey("nice-RS256");
      await sign(level, same.privateKey!);
      assert.ok(level.token.threadStats().serving > 0, "no token thread was used with threadNice 0");
      const started = [...niceByThread()].filter(([tid]) => !before.has(tid));
      assert.ok(started.length >= level.token.threadStats().serving);
      assert.deepEqual(started.filter(([, nice]) => nice !== base), [], "a thread started with threadNice 0 runs at another priority");
    } finally {
      await level.close();
    }
    await hsm.deleteKey("nice-RS256");
    await hsm.close();
  },
);

test("a threadNice outside 0-19 is an InvalidInputError naming the option and the value", async () => {
  for (const threadNice of [-1, 20, 2.5, Number.NaN]) {
    await assert.rejects(openHsm({ home: fixture.home, threadNice }), (error: unknown) => {
      assert.ok(error instanceof InvalidInputError);
      assert.equal(error.code, "ERR_HSM_INVALID_INPUT");
      assert.equal(error.message, `Option \`threadNice\` must be an integer from 0 to 19, got '${threadNice}'`);
      return true;
    });
  }
  process.env.HSMKEY_THREAD_NICE = "-3";
  try {
    await assert.rejects(openHsm({ home: fixture.home }), { name: "InvalidInputError", message: "HSMKEY_THREAD_NICE must be an integer from 0 to 19, got '-3'" });
  } finally {
    delete process.env.HSMKEY_THREAD_NICE;
  }
});
