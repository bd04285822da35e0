/**
 * hsmkey used from several worker_threads at once, on the same embedded SoftHSM token the main
 * thread has open. Each thread loads pkcs11js (and so calls C_Initialize) itself, but the PKCS#11
 * library is one per process: one thread's C_Finalize would end every other thread's sessions.
 * Three workers each sign 500 ES256 and 20 RS256 JWTs concurrently and close their Hsm; the main
 * thread verifies every JWT with node:crypto and must still be able to sign afterwards, and a
 * worker that stays open must keep working after the others have closed.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import * as jose from "jose";
import { installShim, type Hsm, type HsmKey } from "../src/index.js";
import { freshHsm, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, nodeVerifyCompact } from "./helpers/native.js";

let fixture: Fixture;
let hsm: Hsm;
let uninstall: () => void;
let ec: HsmKey;
let rsa: HsmKey;
let tokenObjects: number;

interface Signed {
  type: "signed";
  threadId: number;
  es256: string[];
  rs256: string[];
  busy: number;
  sessionObjects: number;
}
type Message = Signed | { type: "closed"; threadId: number } | { type: "error"; threadId: number; name: string; code?: string; ckr?: string; message: string };

const WORKER = new URL("./helpers/worker-sign.ts", import.meta.url).href;
const TSX = import.meta.resolve("tsx/esm/api");

/**
 * A worker running test/helpers/worker-sign.ts. Node 20 does not apply `--import tsx` from
 * execArgv to a worker's entry file, so a small bootstrap registers tsx in the worker first.
 */
function startWorker(data: { home: string; es: number; rs: number; waitForClose?: boolean }): { worker: Worker; messages: Message[]; exited: Promise<number> } {
  const bootstrap = `import(${JSON.stringify(TSX)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER)}); })`;
  const worker = new Worker(bootstrap, { eval: true, workerData: data });
  const messages: Message[] = [];
  worker.on("message", (m: Message) => messages.push(m));
  const exited = new Promise<number>((resolve, reject) => {
    worker.once("error", reject);
    worker.once("exit", resolve);
  });
  return { worker, messages, exited };
}

function nextMessage(worker: Worker): Promise<Message> {
  return new Promise((resolve) => worker.once("message", resolve));
}

function describe(m: Message): string {
  return m.type === "error" ? `thread ${m.threadId}: ${m.name} ${m.code ?? ""} ${m.ckr ?? ""} ${m.message}` : `${m.type} from ${m.threadId}`;
}

async function mainThreadSigns(): Promise<void> {
  const jwt = await new jose.SignJWT({ from: "main" }).setProtectedHeader({ alg: "ES256" }).sign(ec.privateKey!);
  assert.equal(nodeVerifyCompact(jwt, ec.exportPublic()), true);
}

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  uninstall = installShim();
  ec = await hsm.generateKey("ES256", { label: "ec" });
  rsa = await hsm.generateKey("RS256", { label: "rsa" });
  tokenObjects = (await hsm.stats()).objects.token;
});

after(async () => {
  uninstall?.();
  await fixture?.close();
});

test("3 worker threads sign 500 ES256 + 20 RS256 JWTs each on the token the main thread has open; all verify; main still signs", async () => {
  await mainThreadSigns();
  const runs = [0, 1, 2].map(() => startWorker({ home: fixture.home, es: 500, rs: 20 }));
  const codes = await Promise.all(runs.map((r) => r.exited));
  assert.deepEqual(codes, [0, 0, 0]);
  const threadIds = new Set<number>();
  for (const run of runs) {
    const errors = run.messages.filter((m) => m.type === "error");
    assert.deepEqual(errors.map(describe), [], "no worker failed");
    const signed = run.messages.find((m): m is Signed => m.type === "signed");
    assert.ok(signed, `worker posted its JWTs (${run.messages.map(describe).join("; ")})`);
    assert.ok(run.messages.some((m) => m.type === "closed"), "worker closed its Hsm");
    threadIds.add(signed.threadId);
    assert.equal(signed.es256.length, 500);
    assert.equal(signed.rs256.length, 20);
    assert.deepEqual({ busy: signed.busy, sessionObjects: signed.sessionObjects }, { busy: 0, sessionObjects: 0 });
    for (const [i, jwt] of signed.es256.entries()) {
      assert.equal(nodeVerifyCompact(jwt, ec.exportPublic()), true, `ES256 ${i} of thread ${signed.threadId}`);
      assert.deepEqual(jose.decodeJwt(jwt), { thread: signed.threadId, i });
    }
    for (const jwt of signed.rs256) assert.equal(nodeVerifyCompact(jwt, rsa.exportPublic()), true);
  }
  assert.equal(threadIds.size, 3, "three distinct threads");
  // The workers' C_Finalize (if any) must not have ended the main thread's use of the library.
  await mainThreadSigns();
  await assertNoLeftovers(hsm);
  assert.equal((await hsm.stats()).objects.token, tokenObjects);
});

test("a worker that stays open keeps working after other workers closed their Hsm", async () => {
  const stayer = startWorker({ home: fixture.home, es: 50, rs: 2, waitForClose: true });
  const first = await nextMessage(stayer.worker);
  assert.equal(first.type, "signed", describe(first));
  // Two more workers open, sign and close (and so release the module in their threads).
  const others = [0, 1].map(() => startWorker({ home: fixture.home, es: 50, rs: 2 }));
  await Promise.all(others.map((r) => r.exited));
  for (const r of others) assert.deepEqual(r.messages.filter((m) => m.type === "error").map(describe), []);
  await mainThreadSigns();
  // The open worker's Hsm is asked to close now: it must still be healthy (its close posts "closed").
  stayer.worker.postMessage("close");
  assert.equal(await stayer.exited, 0);
  assert.deepEqual(stayer.messages.filter((m) => m.type === "error").map(describe), []);
  assert.ok(stayer.messages.some((m) => m.type === "closed"));
  await mainThreadSigns();
  await assertNoLeftovers(hsm);
});
