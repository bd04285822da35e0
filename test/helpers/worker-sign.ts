/**
 * Worker-thread script for test/workers.test.ts: opens the embedded token named by
 * workerData.home (the same token the main thread has open), signs `es` ES256 and `rs` RS256 JWTs
 * concurrently through jose and the global shim (installed in this thread's realm), and posts them
 * back with the thread id. On failure it posts the error's name, code, ckr and message.
 */
import { parentPort, threadId, workerData } from "node:worker_threads";
import * as jose from "jose";
import { installShim, openHsm } from "../../src/index.js";

interface Job {
  home: string;
  es: number;
  rs: number;
  /** Keep the Hsm open until the main thread says "close" (to test finalization order). */
  waitForClose?: boolean;
}

const job = workerData as Job;

async function main(): Promise<void> {
  installShim();
  const hsm = await openHsm({ home: job.home });
  try {
    const ec = await hsm.getKey("ec", { alg: "ES256" });
    const rsa = await hsm.getKey("rsa", { alg: "RS256" });
    const sign = (key: typeof ec, alg: string, i: number) =>
      new jose.SignJWT({ thread: threadId, i }).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey!);
    const [es256, rs256] = await Promise.all([
      Promise.all(Array.from({ length: job.es }, (_, i) => sign(ec, "ES256", i))),
      Promise.all(Array.from({ length: job.rs }, (_, i) => sign(rsa, "RS256", i))),
    ]);
    const stats = await hsm.stats();
    parentPort!.postMessage({ type: "signed", threadId, es256, rs256, busy: stats.sessions.busy, sessionObjects: stats.objects.session });
    if (job.waitForClose) {
      await new Promise<void>((resolve) => parentPort!.once("message", () => resolve()));
    }
  } finally {
    await hsm.close();
  }
  parentPort!.postMessage({ type: "closed", threadId });
}

main().catch((error: unknown) => {
  const e = error as { name?: string; code?: string; ckr?: string; message?: string };
  parentPort!.postMessage({ type: "error", threadId, name: e.name, code: e.code, ckr: e.ckr, message: e.message });
});
