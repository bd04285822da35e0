/**
 * Token threads: worker_threads, each with its own pkcs11js instance and session, to which the
 * main thread hands operations on one key in batches: sign, encrypt, decrypt, and the multi-call
 * derive, wrap and unwrap (their throwaway carrier object is created and destroyed on the thread).
 * A job runs whole on the thread, its *Init call included.
 *
 * Why: with a fast token (ECDSA on SoftHSM takes ~45 µs) a pkcs11js async call per signature costs
 * the main thread as much as signing inline, so the second core stayed idle; one postMessage per
 * batch costs a few µs per job. And pkcs11js runs only the final call (C_Sign, C_Decrypt) off the
 * main thread, while some tokens do their work in the *Init call: NSS softoken decrypts an RSA key
 * from its database there (32 ms), and a network HSM's Init is a round trip. On a token thread
 * neither blocks the event loop.
 *
 * Invariants: at most two batches are in flight per thread, so the worker starts the next while the
 * main thread handles the last one's results, and the rest collect meanwhile. The worker shares
 * the process's PKCS#11 library and login, never initialises or finalizes it, opens a fresh session
 * after any failure (an operation may still be active on the old one), and closes its session
 * before it ends. A job that failed in the token is rejected with the token's error; a job the
 * thread never got to (it was closed, died or stalled) is rejected with `notAttempted` set, and the
 * caller runs it on the ordinary path. A batch unanswered after the time limit is rejected with
 * ERR_HSM_TIMEOUT, and its thread retired: PKCS#11 cannot cancel the call, so the thread ends when
 * the token answers.
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type * as pkcs11 from "pkcs11js";
import { SessionError } from "../errors.js";
import { SpreadChoice } from "./spread-choice.js";

export type ThreadOp = "sign" | "encrypt" | "decrypt" | "derive" | "wrap" | "unwrap";

/** One operation for a token thread. */
export interface ThreadWork {
  op: ThreadOp;
  mechanism: pkcs11.Mechanism;
  /** sign, encrypt, decrypt: the input; unwrap: the wrapped key; derive, wrap: unused. */
  data: Buffer;
  /** Size of the output buffer (sign, encrypt, decrypt, wrap). */
  outLength: number;
  /** derive, unwrap: the template of the carrier made; wrap: the carrier itself (with its value). */
  template?: pkcs11.Template;
}

interface Job extends ThreadWork {
  key: Uint8Array;
  resolve: (output: Buffer) => void;
  reject: (error: Error) => void;
}

const MAX_IN_FLIGHT = 2;

type Result = { ok: true; value: Uint8Array } | { ok: false; message: string };

/** Runs in the worker: open a session on the already initialised library, run what comes. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { PKCS11 } = require(workerData.pkcs11js);
const lib = new PKCS11();
lib.load(workerData.library);
try { lib.C_Initialize({ flags: 2 }); } catch (e) { if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test(String(e && e.message))) throw e; }
let session = lib.C_OpenSession(Buffer.from(workerData.slot), 6);
// The login belongs to the application. Where this thread's library is a separate application
// (p11-kit's client opens a new connection, served by a new process), our session is not logged
// in and the main thread's object handles mean nothing here: this thread cannot serve.
const CKS_USER_OR_SO = [1, 3, 4];
const shared = !workerData.loggedIn || CKS_USER_OR_SO.includes(lib.C_GetSessionInfo(session).state);
if (!shared) {
  try { lib.C_CloseSession(session); } catch {}
  parentPort.postMessage("unshared");
  parentPort.close();
}
const EMPTY = Buffer.alloc(1).subarray(0, 0);
const CKA_VALUE = 0x11;
// Structured cloning turns Buffers into Uint8Arrays; pkcs11js wants Buffers (and no empty one).
const buffer = (u) => (u.length ? Buffer.from(u.buffer, u.byteOffset, u.length) : EMPTY);
const mechanismOf = ({ mechanism, parameter }) => {
  if (parameter === undefined) return { mechanism };
  const p = {};
  for (const [k, v] of Object.entries(parameter)) p[k] = v instanceof Uint8Array ? buffer(v) : v;
  return { mechanism, parameter: p };
};
const templateOf = (t) => t.map(({ type, value }) => ({ type, value: value instanceof Uint8Array ? buffer(value) : value }));
const out = (job) => Buffer.alloc(Math.max(job.outLength, 1));
// A carrier never outlives its job: read its value, then destroy it.
const valueOf = (object) => {
  try { return lib.C_GetAttributeValue(session, object, [{ type: CKA_VALUE }])[0].value; }
  finally { lib.C_DestroyObject(session, object); }
};
const RUN = {
  sign: (job, key) => { lib.C_SignInit(session, mechanismOf(job.mechanism), key); return lib.C_Sign(session, buffer(job.data), out(job)); },
  encrypt: (job, key) => { lib.C_EncryptInit(session, mechanismOf(job.mechanism), key); return lib.C_Encrypt(session, buffer(job.data), out(job)); },
  decrypt: (job, key) => { lib.C_DecryptInit(session, mechanismOf(job.mechanism), key); return lib.C_Decrypt(session, buffer(job.data), out(job)); },
  derive: (job, key) => valueOf(lib.C_DeriveKey(session, mechanismOf(job.mechanism), key, templateOf(job.template))),
  unwrap: (job, key) => valueOf(lib.C_UnwrapKey(session, mechanismOf(job.mechanism), key, buffer(job.data), templateOf(job.template))),
  wrap: (job, key) => {
    const carrier = lib.C_CreateObject(session, templateOf(job.template));
    try { return lib.C_WrapKey(session, mechanismOf(job.mechanism), key, carrier, out(job)); }
    finally { lib.C_DestroyObject(session, carrier); }
  },
};
if (shared) parentPort.on("message", (jobs) => {
  if (jobs === "close") {
    // Sessions belong to the process, not the thread: close ours before the thread goes.
    try { lib.C_CloseSession(session); } catch {}
    parentPort.close();
    return;
  }
  const results = jobs.map((job) => {
    try {
      return { ok: true, value: RUN[job.op](job, Buffer.from(job.key)) };
    } catch (e) {
      try { lib.C_CloseSession(session); } catch {}
      try { session = lib.C_OpenSession(Buffer.from(workerData.slot), 6); } catch {}
      return { ok: false, message: String(e && e.message) };
    }
  });
  parentPort.postMessage(results);
});
`;

const notAttempted = (message: string) => Object.assign(new Error(message), { notAttempted: true });

export class TokenThread {
  readonly #worker: Worker;
  #queue: Job[] = [];
  /** Batches sent and not yet answered, oldest first (the worker answers in order). */
  #inFlight: Job[][] = [];
  #timer: NodeJS.Timeout | undefined;
  #dead: Error | undefined;
  #exited = false;
  #closing: Promise<void> | undefined;
  /** Set when a batch outlived the time limit: the thread takes no more work. */
  stalled = false;
  /** Whether the worker answered anything: one that ends before that could not serve at all. */
  #answered = false;

  constructor(
    libraryPath: string,
    slot: pkcs11.Handle,
    loggedIn: boolean,
    readonly timeoutMs: number,
    readonly describe: string,
    readonly onDone: (mechanism: number) => void,
    readonly onCannotServe: (reason: "unshared" | "failed") => void,
  ) {
    const pkcs11js = createRequire(import.meta.url).resolve("pkcs11js");
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { pkcs11js, library: libraryPath, slot: new Uint8Array(slot), loggedIn },
    });
    this.#worker.unref();
    this.#worker.on("message", (results: Result[] | "unshared") => {
      if (results !== "unshared") return this.#settle(results);
      this.onCannotServe("unshared");
      this.#fail(notAttempted("token thread does not share the login"));
    });
    this.#worker.on("error", (error) => {
      if (!this.#answered) this.onCannotServe("failed");
      this.#fail(error);
    });
    this.#worker.on("exit", () => {
      this.#exited = true;
      if (!this.#answered && !this.#closing) this.onCannotServe("failed");
      this.#fail(new Error("token thread ended"));
    });
  }

  run(work: ThreadWork, key: pkcs11.Handle): Promise<Buffer> {
    if (this.#dead || this.#closing || this.stalled) return Promise.reject(notAttempted("token thread closed"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ ...work, key, resolve, reject });
      if (this.#queue.length === 1 && this.#inFlight.length < MAX_IN_FLIGHT) queueMicrotask(() => this.#send());
    });
  }

  #send(): void {
    if (this.#inFlight.length >= MAX_IN_FLIGHT || this.#queue.length === 0 || this.#dead || this.stalled) return;
    const batch = this.#queue;
    this.#queue = [];
    this.#inFlight.push(batch);
    this.#worker.ref(); // keep the process alive while results are owed
    if (this.#inFlight.length === 1) this.#armTimer();
    this.#worker.postMessage(batch.map(({ op, mechanism, key, data, outLength, template }) => ({ op, mechanism, key, data, outLength, template })));
  }

  /** The oldest batch in flight must be answered within the time limit (counted from when it became the oldest). */
  #armTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.timeoutMs <= 0 || this.#inFlight.length === 0) return;
    this.#timer = setTimeout(() => this.#stall(), this.timeoutMs);
    this.#timer.unref();
  }

  #stall(): void {
    this.stalled = true;
    const late = new SessionError(`An operation on ${this.describe} took longer than ${this.timeoutMs} ms`, "ERR_HSM_TIMEOUT");
    for (const job of this.#inFlight.flat()) job.reject(late);
    for (const job of this.#queue) job.reject(notAttempted("token thread stalled"));
    this.#inFlight = [];
    this.#queue = [];
  }

  #settle(results: Result[]): void {
    this.#answered = true;
    const batch = this.#inFlight.shift() ?? []; // empty if the batch was given up (stalled)
    // A stalled thread whose token call finally returned ends (closing its session).
    if (this.stalled) return void this.close();
    this.#armTimer();
    // Idle: the thread need not keep the process alive; closing: it must, until it has ended.
    if (this.#inFlight.length === 0 && !this.#closing) this.#worker.unref();
    batch.forEach((job, i) => {
      const r = results[i];
      if (r?.ok) {
        this.onDone(job.mechanism.mechanism);
        job.resolve(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength));
      } else {
        job.reject(new Error(r?.message ?? "no result"));
      }
    });
    this.#send();
  }

  #fail(error: Error): void {
    clearTimeout(this.#timer);
    this.#dead ??= Object.assign(error, { notAttempted: true });
    for (const job of [...this.#inFlight.flat(), ...this.#queue]) job.reject(this.#dead);
    this.#inFlight = [];
    this.#queue = [];
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Jobs queued or in flight. */
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
    const closed = notAttempted("token thread closed");
    for (const job of queued) job.reject(closed);
    this.#closing = new Promise<void>((resolve) => {
      if (this.#exited) return resolve();
      this.#worker.once("exit", () => resolve());
      this.#worker.ref();
      this.#worker.postMessage("close");
      // A worker stuck in a token call still ends: terminate it after a grace period.
      setTimeout(() => void this.#worker.terminate(), 5000).unref();
    }).finally(() => this.#fail(closed));
    return this.#closing;
  }
}

export interface ThreadStats {
  serving: number;
  stalled: number;
  pending: number;
}

/** After a thread ended before answering anything, threads are tried again this much later. */
const RETRY_AFTER_FAILED_START_MS = 30_000;

/** More threads than this gain nothing a pool of sessions on pkcs11js threads does not. */
const MAX_THREADS = 4;

/**
 * A token's threads, started as load needs them: up to one per core (at most MAX_THREADS). A
 * mechanism the token runs in parallel spreads over them; one it serialises (SoftHSM's ECDSA)
 * keeps to the first, since a second caller would only slow both down (see spread-choice.ts).
 */
export class TokenThreads {
  #threads: TokenThread[] = [];
  /** Stalled threads, until they end. */
  readonly #stalled = new Set<TokenThread>();
  /**
   * Until when no thread is used: for good once one found it cannot share the main thread's login;
   * for a while after one ended before answering anything (it could not open a session, say).
   */
  #disabledUntil = 0;
  readonly #max = Math.max(1, Math.min(availableParallelism(), MAX_THREADS));
  readonly #choices = new Map<number, SpreadChoice>();

  constructor(
    readonly libraryPath: string,
    readonly slot: pkcs11.Handle,
    readonly loggedIn: boolean,
    readonly timeoutMs: number,
    readonly describe: string,
  ) {}

  /** Whether token threads may be used now (else operations take the ordinary path). */
  get usable(): boolean {
    return this.#disabledUntil === 0 || Date.now() >= this.#disabledUntil;
  }

  /** Drop threads that ended or stalled (a stalled one ends when the token answers it). */
  #prune(): void {
    if (!this.#threads.some((thread) => thread.stalled || thread.exited)) return;
    this.#threads = this.#threads.filter((thread) => {
      if (thread.stalled) this.#stalled.add(thread);
      return !thread.stalled && !thread.exited;
    });
  }

  /** Whether operations with this mechanism currently spread over several threads. */
  spreads(mechanism: number): boolean {
    return this.#choice(mechanism).spread;
  }

  /** Count an operation with this mechanism that finished, wherever it ran. */
  done(mechanism: number): void {
    this.#choice(mechanism).done();
  }

  #choice(mechanism: number): SpreadChoice {
    let choice = this.#choices.get(mechanism);
    if (!choice) this.#choices.set(mechanism, (choice = new SpreadChoice()));
    return choice;
  }

  /** The thread for the next operation: the least loaded one if the mechanism spreads, else the first. */
  pick(mechanism: number): TokenThread {
    this.#prune();
    const choice = this.#choice(mechanism);
    choice.handing(this.pending);
    if (this.#threads.length === 0) return this.#start();
    if (!choice.spread) return this.#threads[0]!;
    const idlest = this.#threads.reduce((a, b) => (b.pending < a.pending ? b : a));
    return idlest.pending > 0 && this.#threads.length < this.#max ? this.#start() : idlest;
  }

  #start(): TokenThread {
    const thread = new TokenThread(
      this.libraryPath,
      this.slot,
      this.loggedIn,
      this.timeoutMs,
      this.describe,
      (mechanism) => this.done(mechanism),
      // "unshared" (the thread's session is not logged in: see the worker) is for good; "failed"
      // (it ended before answering anything: could not open a session, say) for a while.
      (reason) => (this.#disabledUntil = reason === "unshared" ? Infinity : Date.now() + RETRY_AFTER_FAILED_START_MS),
    );
    this.#threads.push(thread);
    return thread;
  }

  /** Operations queued on or owed by all threads. */
  get pending(): number {
    return this.#threads.reduce((n, thread) => n + thread.pending, 0);
  }

  /** Threads serving, threads stalled in a token call past the time limit, operations owed. */
  stats(): ThreadStats {
    this.#prune();
    for (const thread of this.#stalled) if (thread.exited) this.#stalled.delete(thread);
    return { serving: this.#threads.length, stalled: this.#stalled.size, pending: this.pending };
  }

  /**
   * End the serving threads (see TokenThread.close), and with `stalled` the stalled ones too, which
   * may take as long as their token call. The set may start new threads afterwards.
   */
  async close({ stalled }: { stalled: boolean }): Promise<void> {
    const threads = stalled ? [...this.#threads, ...this.#stalled] : this.#threads;
    this.#threads = [];
    if (stalled) this.#stalled.clear();
    await Promise.all(threads.map((thread) => thread.close()));
  }
}
