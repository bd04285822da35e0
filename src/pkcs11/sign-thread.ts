/**
 * A signing thread: a worker_thread with its own pkcs11js instance and session, to which the main
 * thread hands fast signatures in batches once its inline budget for the turn is spent.
 *
 * Why: with a fast token (ECDSA on SoftHSM takes ~45 µs) a pkcs11js async call per signature costs
 * the main thread as much as signing inline, so the second core stayed idle. One postMessage per
 * batch costs a few µs per signature, and the worker signs while the main thread builds the next
 * tokens. Invariants: at most two batches are in flight, so the worker starts the next while the
 * main thread handles the last one's results, and the rest collect meanwhile; the worker
 * shares the process's PKCS#11 library and login, never initialises or finalizes it, and closes
 * its session before it ends. A job that failed in the token is rejected with the token's error; a
 * job the thread never got to (it was closed or died) is rejected with `notAttempted` set, and the
 * caller runs it on the ordinary path.
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type * as pkcs11 from "pkcs11js";
import { SpreadChoice } from "./spread-choice.js";

interface Job {
  mechanism: number;
  key: Uint8Array;
  data: Uint8Array;
  outLength: number;
  resolve: (signature: Buffer) => void;
  reject: (error: Error) => void;
}

const MAX_IN_FLIGHT = 2;

type Result = { ok: true; value: Uint8Array } | { ok: false; message: string };

/** Runs in the worker: open a session on the already initialised library, sign what comes. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { PKCS11 } = require(workerData.pkcs11js);
const lib = new PKCS11();
lib.load(workerData.library);
try { lib.C_Initialize({ flags: 2 }); } catch (e) { if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test(String(e && e.message))) throw e; }
let session = lib.C_OpenSession(Buffer.from(workerData.slot), 6);
const EMPTY = Buffer.alloc(1).subarray(0, 0);
parentPort.on("message", (jobs) => {
  if (jobs === "close") {
    // Sessions belong to the process, not the thread: close ours before the thread goes.
    try { lib.C_CloseSession(session); } catch {}
    parentPort.close();
    return;
  }
  const results = jobs.map((job) => {
    try {
      lib.C_SignInit(session, { mechanism: job.mechanism }, Buffer.from(job.key));
      const data = job.data.length ? Buffer.from(job.data.buffer, job.data.byteOffset, job.data.length) : EMPTY;
      return { ok: true, value: lib.C_Sign(session, data, Buffer.alloc(job.outLength)) };
    } catch (e) {
      // The operation may still be active after a failure: start over on a new session.
      try { lib.C_CloseSession(session); } catch {}
      try { session = lib.C_OpenSession(Buffer.from(workerData.slot), 6); } catch {}
      return { ok: false, message: String(e && e.message) };
    }
  });
  parentPort.postMessage(results);
});
`;

export class SignThread {
  readonly #worker: Worker;
  #queue: Job[] = [];
  /** Batches sent and not yet answered, oldest first (the worker answers in order). */
  #inFlight: Job[][] = [];
  #dead: Error | undefined;
  #closing: Promise<void> | undefined;
  /** Set when a job failed there: its session may be gone, so the token starts a fresh thread. */
  broken = false;

  constructor(
    libraryPath: string,
    slot: pkcs11.Handle,
    readonly onSigned: (mechanism: number) => void,
  ) {
    const pkcs11js = createRequire(import.meta.url).resolve("pkcs11js");
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { pkcs11js, library: libraryPath, slot: new Uint8Array(slot) },
    });
    this.#worker.unref();
    this.#worker.on("message", (results: Result[]) => this.#settle(results));
    this.#worker.on("error", (error) => this.#fail(error));
    this.#worker.on("exit", () => this.#fail(new Error("signing thread ended")));
  }

  sign(mechanism: number, key: pkcs11.Handle, data: Buffer, outLength: number): Promise<Buffer> {
    if (this.#dead || this.#closing) return Promise.reject(Object.assign(new Error("signing thread closed"), { notAttempted: true }));
    return new Promise((resolve, reject) => {
      this.#queue.push({ mechanism, key, data, outLength, resolve, reject });
      if (this.#queue.length === 1 && this.#inFlight.length < MAX_IN_FLIGHT) queueMicrotask(() => this.#send());
    });
  }

  #send(): void {
    if (this.#inFlight.length >= MAX_IN_FLIGHT || this.#queue.length === 0 || this.#dead) return;
    const batch = this.#queue;
    this.#queue = [];
    this.#inFlight.push(batch);
    this.#worker.ref(); // keep the process alive while signatures are owed
    this.#worker.postMessage(batch.map(({ mechanism, key, data, outLength }) => ({ mechanism, key, data, outLength })));
  }

  #settle(results: Result[]): void {
    const batch = this.#inFlight.shift() ?? [];
    if (this.#inFlight.length === 0) this.#worker.unref();
    batch.forEach((job, i) => {
      const r = results[i];
      if (r?.ok) {
        this.onSigned(job.mechanism);
        job.resolve(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength));
      } else {
        this.broken = true;
        job.reject(new Error(r?.message ?? "no result"));
      }
    });
    this.#send();
  }

  #fail(error: Error): void {
    this.#dead ??= Object.assign(error, { notAttempted: true });
    for (const job of [...this.#inFlight.flat(), ...this.#queue]) job.reject(this.#dead);
    this.#inFlight = [];
    this.#queue = [];
  }

  /** Jobs queued or in flight (for tests and stats). */
  get pending(): number {
    return this.#queue.length + this.#inFlight.reduce((n, b) => n + b.length, 0);
  }

  /**
   * Stop taking jobs, let the batches already sent finish, close the thread's session, end the
   * thread. Resolves when it has ended.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    const queued = this.#queue;
    this.#queue = [];
    const closed = Object.assign(new Error("signing thread closed"), { notAttempted: true });
    for (const job of queued) job.reject(closed);
    this.#closing = new Promise<void>((resolve) => {
      this.#worker.once("exit", () => resolve());
      this.#worker.ref();
      this.#worker.postMessage("close");
      // A worker stuck in a token call still ends: terminate it after a grace period.
      setTimeout(() => void this.#worker.terminate(), 5000).unref();
    }).finally(() => this.#fail(closed));
    return this.#closing;
  }
}

/** More signing threads than this gain nothing a pool of sessions on pkcs11js threads does not. */
const MAX_THREADS = 4;

/**
 * A token's signing threads, started as load needs them: up to one per core (at most MAX_THREADS).
 * A mechanism the token runs in parallel spreads over them; one it serialises (SoftHSM's ECDSA)
 * keeps to the first, since a second caller would only slow both down (see spread-choice.ts).
 */
export class SignThreads {
  #threads: SignThread[] = [];
  readonly #max = Math.max(1, Math.min(availableParallelism(), MAX_THREADS));
  readonly #choices = new Map<number, SpreadChoice>();

  constructor(
    readonly libraryPath: string,
    readonly slot: pkcs11.Handle,
  ) {}

  /** Whether signatures of this mechanism currently spread over several threads. */
  spreads(mechanism: number): boolean {
    return this.#choice(mechanism).spread;
  }

  /** Count a signature of this mechanism that finished, wherever it ran. */
  signed(mechanism: number): void {
    this.#choice(mechanism).signed();
  }

  #choice(mechanism: number): SpreadChoice {
    let choice = this.#choices.get(mechanism);
    if (!choice) this.#choices.set(mechanism, (choice = new SpreadChoice()));
    return choice;
  }

  /** The thread for the next signature: the least loaded one if the mechanism spreads, else the first. */
  pick(mechanism: number): SignThread {
    // A thread on which a job failed may have lost its session: it ends, and a fresh one starts.
    this.#threads = this.#threads.filter((thread) => !thread.broken || void thread.close());
    if (this.#threads.length === 0) return this.#start();
    if (!this.spreads(mechanism)) return this.#threads[0]!;
    const idlest = this.#threads.reduce((a, b) => (b.pending < a.pending ? b : a));
    return idlest.pending > 0 && this.#threads.length < this.#max ? this.#start() : idlest;
  }

  #start(): SignThread {
    const thread = new SignThread(this.libraryPath, this.slot, (mechanism) => this.signed(mechanism));
    this.#threads.push(thread);
    return thread;
  }

  /** Signatures queued on or owed by all threads. */
  get pending(): number {
    return this.#threads.reduce((n, thread) => n + thread.pending, 0);
  }

  /** End every thread (see SignThread.close); the set may start new ones afterwards. */
  async close(): Promise<void> {
    const threads = this.#threads;
    this.#threads = [];
    await Promise.all(threads.map((thread) => thread.close()));
  }
}
