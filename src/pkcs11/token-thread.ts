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
 * Invariants: at most MAX_IN_FLIGHT batches are in flight per thread, so the worker starts the
 * next while the main thread handles the last one's results, and the rest collect meanwhile. A
 * shared worker uses the process's PKCS#11 instance and login and never initialises or finalizes
 * it; an own worker (module-copy.ts) initialises, logs in to and finalizes its own instance and
 * knows keys only by identity. Either opens a fresh session after any failure (an operation may
 * still be active on the old one), and closes its sessions before it ends. A job that failed in
 * the token is rejected with the token's error; a job the thread never got to (it was closed, died
 * or stalled, or an own worker could not find the key) is rejected with `notAttempted` set, and the
 * caller runs it on the ordinary path. A batch unanswered after the time limit is rejected with
 * ERR_HSM_TIMEOUT, and its thread retired: PKCS#11 cannot cancel the call, so the thread ends when
 * the token answers.
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type * as pkcs11 from "pkcs11js";
import { SessionError } from "../errors.js";
import { copyModule, removeCopy } from "./module-copy.js";
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

/** The key of an operation: its handle in the process's module instance, and its identity for an own instance. */
export interface ThreadKey {
  handle: pkcs11.Handle;
  /** Names the key in a token thread's messages (unique in the process). */
  ref: string;
  /** Finds exactly this object (class, id, label). */
  identity: pkcs11.Template;
  /**
   * Set when an own instance found several objects of this identity: the key then takes the
   * ordinary path without asking a thread again (a new handle, after a recovery, asks again).
   */
  ambiguous?: true;
}

interface Job {
  work: ThreadWork;
  key: ThreadKey;
  resolve: (output: Buffer) => void;
  reject: (error: Error) => void;
}

/** How a token thread reaches the token. */
export interface ThreadSetup {
  library: string;
  slot: pkcs11.Handle;
  loggedIn: boolean;
  timeoutMs: number;
  describe: string;
  /**
   * How much lower than its creator's the thread's CPU priority (nice value) is. On Linux a nice
   * value belongs to a thread, so the event loop keeps its own; elsewhere it would belong to the
   * whole process, and it is left alone.
   */
  nice: number;
  /** Set: the thread loads its own instance of the library (a copy: module-copy.ts). */
  own?: { serial: string; libraryParameters: string | undefined; pin: () => string | undefined };
}

/**
 * Batches in flight per thread, and the size at which a batch leaves at once rather than when the
 * current microtasks are done. Measured with jose at 64 callers on SoftHSM: one batch of all 64 left
 * the thread idle while the main thread finished the last one's tokens; batches of 8 keep both
 * busy, and eight in flight keep the thread fed through a main-thread turn that signs inline for
 * its 2 ms budget (thread busy 0.6 with four in flight, 0.85 with eight).
 */
const MAX_IN_FLIGHT = 8;
const BATCH = 8;
const BUSY_WINDOW_MS = 100;

/** Operations that make a throwaway session object. */
const CARRIER_OPS: ReadonlySet<ThreadOp> = new Set(["derive", "wrap", "unwrap"]);

/**
 * A thread with its own module instance is replaced after its jobs made this many throwaway
 * objects. SoftHSM never frees a destroyed session object before C_Finalize (it keeps every one it
 * made, so that stale pointers stay valid): measured, 0.8 KB of memory per ECDH-ES decryption, for
 * as long as the instance lives. Replacing the thread finalizes its instance and frees them; the
 * main thread's instance, shared by the process, cannot be, which is one more reason those
 * operations always run on token threads.
 */
const RECYCLE_AFTER = 20_000;

type Result = { ok: true; value: Uint8Array } | { ok: false; message: string; notAttempted?: boolean; ambiguous?: true };
/** A batch's results, followed by the ms the worker spent on it. */
type Message = (Result | number)[] | "unshared" | { failed: string };

/**
 * Runs in the worker. Shared: open a session on the process's initialised library, whose login and
 * object handles it shares. Own (a copy of the library, see module-copy.ts): initialise that
 * instance, find the token by serial, open a session and log in with the PIN the first message
 * brings; keys come by identity and are looked up once. Then run what comes.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { PKCS11 } = require(workerData.pkcs11js);
const own = workerData.own;
if (workerData.nice > 0 && process.platform === "linux") {
  const os = require("node:os");
  try { os.setPriority(0, Math.min(19, os.getPriority(0) + workerData.nice)); } catch {}
}
const lib = new PKCS11();
let loadError;
try { lib.load(workerData.library); } catch (e) { if (!own) throw e; loadError = e; }
// The copy is loaded (mapped), or cannot be (a temporary directory mounted noexec): its file is no longer needed.
if (own) try { require("node:fs").rmSync(own.dir, { recursive: true, force: true }); } catch {}
const ckr = (e) => (String(e && e.message).match(/CKR_[A-Z_0-9]+/) || [""])[0];
const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const CKS_USER_OR_SO = [1, 3, 4];
const loggedIn = () => CKS_USER_OR_SO.includes(lib.C_GetSessionInfo(session).state);
let slot = Buffer.from(workerData.slot);
let session;
// Own instance: a session that lives as long as the thread, since closing an instance's last session
// logs it out (and SoftHSM then forgets the handles of private objects).
let anchor;
let pin;
let ready = false;

function startShared() {
  try { lib.C_Initialize({ flags: 2 }); } catch (e) { if (ckr(e) !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") throw e; }
  session = lib.C_OpenSession(slot, 6);
  // The login belongs to the application. Where this thread's library is a separate application
  // (p11-kit's client opens a new connection, served by a new process), our session is not logged
  // in and the main thread's object handles mean nothing here: this thread cannot serve.
  if (workerData.loggedIn && !loggedIn()) {
    try { lib.C_CloseSession(session); } catch {}
    parentPort.postMessage("unshared");
    parentPort.close();
    return;
  }
  ready = true;
}

// A module that reads its token store while another process writes it (SoftHSM at every C_Login)
// may miss the token or its PIN until it is initialised again: see module.ts, retryOnFreshModule.
const MISREAD = ["CKR_USER_PIN_NOT_INITIALIZED", "CKR_GENERAL_ERROR", "NO_TOKEN"];
function startOwn() {
  const init = { flags: 2 };
  if (own.libraryParameters !== undefined) init.libraryParameters = own.libraryParameters;
  for (const wait of [10, 20, 40, 80, -1]) {
    try {
      lib.C_Initialize(init);
    } catch (e) {
      // The copy shares an instance after all (a shim forwarding to a library already loaded): it
      // must not be finalized, and cannot serve as its own.
      if (ckr(e) === "CKR_CRYPTOKI_ALREADY_INITIALIZED") throw new Error("the copy of the module is not a separate instance");
      throw e;
    }
    try {
      const slots = lib.C_GetSlotList(true).filter((s) => lib.C_GetTokenInfo(s).serialNumber.trim() === own.serial);
      if (slots.length !== 1) throw new Error("NO_TOKEN: the token (serial " + own.serial + ") is not in the module's slot list");
      slot = slots[0];
      anchor = lib.C_OpenSession(slot, 6);
      session = lib.C_OpenSession(slot, 6);
      logIn();
      ready = true;
      return;
    } catch (e) {
      const reason = ckr(e) || String(e && e.message).split(":")[0];
      try { lib.C_Finalize(); } catch {}
      if (wait < 0 || !MISREAD.includes(reason)) throw e;
      pause(wait);
    }
  }
}

function logIn() {
  if (pin === undefined || loggedIn()) return;
  try { lib.C_Login(session, 1, pin); } catch (e) { if (ckr(e) !== "CKR_USER_ALREADY_LOGGED_IN") throw e; }
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

const HANDLE_INVALID = ["CKR_OBJECT_HANDLE_INVALID", "CKR_KEY_HANDLE_INVALID", "CKR_WRAPPING_KEY_HANDLE_INVALID", "CKR_UNWRAPPING_KEY_HANDLE_INVALID"];
// Own instance: the handle of each key, found once by its identity (exactly one object must match).
const handles = new Map();
const notAttempted = (message, more) => Object.assign(new Error(message), { notAttempted: true }, more);
function keyOf(job) {
  if (!own) return Buffer.from(job.key);
  const known = handles.get(job.ref);
  if (known) return known;
  if (!job.identity) throw notAttempted("the token thread does not know this key yet");
  lib.C_FindObjectsInit(session, templateOf(job.identity));
  let found;
  try { found = lib.C_FindObjects(session, 2); } finally { lib.C_FindObjectsFinal(session); }
  if (found.length !== 1) throw notAttempted(found.length + " objects match the key's identity in the token thread's module instance", found.length > 1 ? { ambiguous: true } : {});
  handles.set(job.ref, found[0]);
  return found[0];
}

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

/** After a failure: a fresh session (an operation may still be active on the old one), logged in. */
function freshSession() {
  try { lib.C_CloseSession(session); } catch {}
  try {
    session = lib.C_OpenSession(slot, 6);
    if (own) logIn();
  } catch {
    // An own instance that cannot open a session is of no use: end, so that the next thread starts afresh.
    if (own) setImmediate(() => process.exit(1));
  }
}

function close() {
  // Sessions belong to the process, not the thread: close ours before the thread goes; an own
  // instance is finalized too.
  try { lib.C_CloseSession(session); } catch {}
  if (own) {
    try { lib.C_CloseSession(anchor); } catch {}
    try { lib.C_Finalize(); } catch {}
  }
  parentPort.close();
}

if (loadError) {
  parentPort.postMessage({ failed: "the copy of the module does not load: " + String(loadError.message).split("\\n")[0] });
  parentPort.close();
} else if (!own) {
  startShared();
}
parentPort.on("message", (message) => {
  if (message === "close") return close();
  if (!ready) {
    // An own instance's first message: the PIN.
    pin = message.pin;
    try {
      startOwn();
    } catch (e) {
      parentPort.postMessage({ failed: String(e && e.message) });
      parentPort.close();
    }
    return;
  }
  const started = performance.now();
  const results = message.map((job) => {
    try {
      return { ok: true, value: RUN[job.op](job, keyOf(job)) };
    } catch (e) {
      if (e.notAttempted) return { ok: false, message: e.message, notAttempted: true, ambiguous: e.ambiguous };
      freshSession();
      // Own instance: a handle it no longer knows (the key was deleted, or the instance lost its
      // login) is looked up again next time; the job goes to the ordinary path, which reports it.
      if (own && HANDLE_INVALID.includes(ckr(e))) {
        handles.delete(job.ref);
        return { ok: false, message: String(e && e.message), notAttempted: true };
      }
      return { ok: false, message: String(e && e.message) };
    }
  });
  // The time spent on the batch rides along, last: the main thread learns how busy the thread is.
  results.push(performance.now() - started);
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
  /** Own instance: the keys whose identity the worker has looked up (later jobs name them by ref only). */
  readonly #known: Set<string> | undefined;

  readonly #setup: ThreadSetup;

  constructor(
    setup: ThreadSetup,
    readonly onDone: (mechanism: number) => void,
    readonly onCannotServe: (reason: "unshared" | "failed" | "no own instance", detail?: string) => void,
  ) {
    this.#setup = setup;
    const pkcs11js = createRequire(import.meta.url).resolve("pkcs11js");
    const copy = setup.own ? copyModule(setup.library) : undefined;
    const own = setup.own && copy ? { dir: copy.dir, serial: setup.own.serial, libraryParameters: setup.own.libraryParameters } : undefined;
    this.#known = own ? new Set() : undefined;
    try {
      this.#worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { pkcs11js, library: copy?.file ?? setup.library, slot: new Uint8Array(setup.slot), loggedIn: setup.loggedIn, nice: setup.nice, own },
      });
    } catch (error) {
      if (copy) removeCopy(copy);
      throw error;
    }
    // The PIN goes by message, not in workerData (which the Worker's options would hold).
    if (setup.own) this.#worker.postMessage({ pin: setup.own.pin() });
    this.#worker.unref();
    this.#worker.on("message", (message: Message) => {
      if (Array.isArray(message)) return this.#settle(message);
      const failed = message === "unshared" ? undefined : message.failed;
      this.onCannotServe(failed === undefined ? "unshared" : "no own instance", failed);
      this.#fail(notAttempted(failed === undefined ? "token thread does not share the login" : `token thread has no module instance: ${failed}`));
    });
    this.#worker.on("error", (error) => {
      if (!this.#answered) this.onCannotServe("failed");
      this.#fail(error);
    });
    this.#worker.on("exit", () => {
      this.#exited = true;
      // The worker removes the copy once it is loaded; this is for a worker that never got so far.
      if (copy) removeCopy(copy);
      if (!this.#answered && !this.#closing) this.onCannotServe("failed");
      this.#fail(new Error("token thread ended"));
    });
  }

  get describe(): string {
    return this.#setup.describe;
  }

  get timeoutMs(): number {
    return this.#setup.timeoutMs;
  }

  run(work: ThreadWork, key: ThreadKey): Promise<Buffer> {
    if (this.#dead || this.#closing || this.stalled) return Promise.reject(notAttempted("token thread closed"));
    return new Promise((resolve, reject) => {
      const queued = this.#queue.push({ work, key, resolve, reject });
      // The first job of a batch sends it when this turn's microtasks are done; a full batch goes now.
      if (queued === 1) queueMicrotask(() => this.#sendAll());
      else if (queued >= BATCH) this.#send();
    });
  }

  /** Batches sent in this event-loop turn, and whether the turn's end (a setImmediate) is awaited. */
  #turnSends = 0;
  #turnEnding = false;

  /**
   * At most MAX_IN_FLIGHT batches leave per event-loop turn; the rest wait for its check phase.
   * Why: Node delivers a port's messages in one loop (up to 1,000) for as long as they keep coming,
   * and a fast thread answers each batch at once, so sending again from every answer would hold
   * the event loop for that whole exchange (measured with HS256: 60-80 ms).
   */
  #countTurn(): void {
    this.#turnSends++;
    if (this.#turnEnding) return;
    this.#turnEnding = true;
    setImmediate(() => {
      this.#turnEnding = false;
      this.#turnSends = 0;
      this.#sendAll();
    });
  }

  #sendAll(): void {
    while (this.#send());
  }

  /** Send the next batch (up to BATCH jobs), if one may go now; whether one went. */
  #send(): boolean {
    if (this.#inFlight.length >= MAX_IN_FLIGHT || this.#queue.length === 0 || this.#dead || this.stalled) return false;
    if (this.#turnSends >= MAX_IN_FLIGHT) return false;
    this.#countTurn();
    const batch = this.#queue.length > BATCH ? this.#queue.splice(0, BATCH) : this.#queue;
    if (batch === this.#queue) this.#queue = [];
    this.#inFlight.push(batch);
    this.#worker.ref(); // keep the process alive while results are owed
    if (this.#inFlight.length === 1) this.#armTimer();
    this.#worker.postMessage(batch.map((job) => this.#message(job)));
    return true;
  }

  /** What the worker gets of a job: the key's handle (shared instance) or its ref, with its identity until known. */
  #message({ work, key }: Job): object {
    const { op, mechanism, data, outLength, template } = work;
    if (!this.#known) return { op, mechanism, key: key.handle, data, outLength, template };
    const identity = this.#known.has(key.ref) ? undefined : key.identity;
    return { op, mechanism, ref: key.ref, identity, data, outLength, template };
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

  /** Throwaway objects the worker's jobs have made (derive, wrap, unwrap): see RECYCLE_AFTER. */
  carriers = 0;

  /** Of the busy measure: ms the worker spent in batches since `#since`, and the last share measured. */
  #busyMs = 0;
  #since = performance.now();
  #busyShare = 0;

  /**
   * The share of the last ~100 ms the worker spent running batches: near 1 when it is the
   * bottleneck, lower when it waits for the main thread to send work.
   */
  get busyShare(): number {
    const elapsed = performance.now() - this.#since;
    if (elapsed >= BUSY_WINDOW_MS) {
      this.#busyShare = Math.min(1, this.#busyMs / elapsed);
      this.#busyMs = 0;
      this.#since += elapsed;
    }
    return this.#busyShare;
  }

  #settle(message: (Result | number)[]): void {
    this.#busyMs += message.pop() as number;
    const results = message as Result[];
    this.#answered = true;
    const batch = this.#inFlight.shift() ?? []; // empty if the batch was given up (stalled)
    // A stalled thread whose token call finally returned ends (closing its session).
    if (this.stalled) return void this.close();
    this.#armTimer();
    // Idle: the thread need not keep the process alive; closing: it must, until it has ended.
    if (this.#inFlight.length === 0 && !this.#closing) this.#worker.unref();
    batch.forEach((job, i) => {
      const r = results[i];
      if (CARRIER_OPS.has(job.work.op)) this.carriers++;
      if (r?.ok) {
        this.#known?.add(job.key.ref);
        this.onDone(job.work.mechanism.mechanism);
        job.resolve(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength));
      } else if (r?.notAttempted) {
        if (r.ambiguous) job.key.ambiguous = true;
        job.reject(notAttempted(r.message));
      } else {
        job.reject(new Error(r?.message ?? "no result"));
      }
    });
    this.#sendAll();
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

/**
 * A thread busy this share of the time is the bottleneck. Measured at 64 callers on SoftHSM: the
 * thread signing ES256 is busy 0.85-0.92 of the time, signing HS256 (which costs jose more than the
 * token) well below.
 */
const SATURATED = 0.8;

/** After a thread ended before answering anything, threads are tried again this much later. */
const RETRY_AFTER_FAILED_START_MS = 30_000;

/** More threads than this gain nothing a pool of sessions on pkcs11js threads does not. */
const MAX_THREADS = 4;

/**
 * A token's threads, started as load needs them: up to one per core (at most MAX_THREADS). A
 * mechanism the token runs in parallel spreads over them; one it serialises (SoftHSM's ECDSA on
 * one module instance) keeps to the first, since a second caller would only slow both down (see
 * spread-choice.ts). With `own` set each thread loads its own instance of the module; if one cannot
 * (no copy could be made, the copy is not a separate instance, the token is not found there) the
 * threads share the process's instance from then on, and `ownFailure` says why.
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

  #setup: ThreadSetup;
  /** Why the threads gave up their own module instances, if they did. */
  ownFailure: string | undefined;

  constructor(setup: ThreadSetup) {
    this.#setup = setup;
  }

  /** Whether the threads load their own instances of the module (see module-copy.ts). */
  get ownInstances(): boolean {
    return this.#setup.own !== undefined;
  }

  /**
   * Whether the threads can run operations with this key: an own instance cannot see the process's
   * session objects (they belong to the instance that made them), only objects on the token, and
   * only those its identity names alone.
   */
  serves(key: ThreadKey, persistent: boolean): boolean {
    return !this.ownInstances || (persistent && !key.ambiguous);
  }

  #shareInstance(reason: string): void {
    if (!this.#setup.own) return;
    const { own: _, ...shared } = this.#setup;
    this.#setup = shared;
    this.ownFailure = reason;
  }

  /** Whether token threads may be used now (else operations take the ordinary path). */
  get usable(): boolean {
    return this.#disabledUntil === 0 || Date.now() >= this.#disabledUntil;
  }

  /** Drop threads that ended or stalled (a stalled one ends when the token answers it). */
  #prune(): void {
    if (this.ownInstances) this.#recycle();
    if (!this.#threads.some((thread) => thread.stalled || thread.exited)) return;
    this.#threads = this.#threads.filter((thread) => {
      if (thread.stalled) this.#stalled.add(thread);
      return !thread.stalled && !thread.exited;
    });
  }

  /** Threads replaced (see RECYCLE_AFTER), and those still finishing their last batches. */
  recycled = 0;
  readonly #retiring = new Set<TokenThread>();

  #recycle(): void {
    for (const thread of this.#threads) {
      if (thread.carriers < RECYCLE_AFTER) continue;
      this.#threads = this.#threads.filter((t) => t !== thread);
      this.#retiring.add(thread);
      this.recycled++;
      void thread.close().finally(() => this.#retiring.delete(thread));
    }
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

  /**
   * Whether the threads that take cheap work (one fewer than the cores: see pick) are its
   * bottleneck, each busy at least SATURATED of the time: then the main thread signs beside them;
   * otherwise it is the bottleneck itself (jose's own work, as with HS256) and leaves them the token.
   */
  saturated(): boolean {
    const threads = this.#threads.slice(0, this.#cheapMax);
    return threads.length > 0 && threads.every((thread) => thread.busyShare >= SATURATED);
  }

  get #cheapMax(): number {
    return Math.max(1, this.#max - 1);
  }

  /**
   * The thread for the next operation: the least loaded one if the mechanism spreads, else the
   * first. `mainSigns`: the main thread signs such work too when the threads are swamped, beside
   * them on its own module instance, so it is spread over one thread fewer than the cores.
   */
  pick(mechanism: number, mainSigns = false): TokenThread {
    this.#prune();
    const choice = this.#choice(mechanism);
    choice.handing(this.pending);
    if (this.#threads.length === 0) return this.#start();
    if (!choice.spread) return this.#threads[0]!;
    const max = mainSigns && this.ownInstances ? this.#cheapMax : this.#max;
    const threads = this.#threads.length > max ? this.#threads.slice(0, max) : this.#threads;
    const idlest = threads.reduce((a, b) => (b.pending < a.pending ? b : a));
    return idlest.pending > 0 && this.#threads.length < max ? this.#start() : idlest;
  }

  #start(): TokenThread {
    let thread: TokenThread;
    try {
      thread = new TokenThread(this.#setup, (mechanism) => this.done(mechanism), (reason, detail) => this.#cannotServe(reason, detail));
    } catch (error) {
      if (!this.#setup.own) throw error;
      this.#shareInstance(`no copy of the module could be made: ${(error as Error).message}`);
      return this.#start();
    }
    this.#threads.push(thread);
    return thread;
  }

  /**
   * "unshared" (the thread's session is not logged in: see the worker) disables the threads for
   * good; "failed" (it ended before answering anything: could not open a session, say) for a while;
   * "no own instance" makes later threads share the process's instance.
   */
  #cannotServe(reason: "unshared" | "failed" | "no own instance", detail?: string): void {
    if (reason === "no own instance") this.#shareInstance(detail ?? reason);
    else this.#disabledUntil = reason === "unshared" ? Infinity : Date.now() + RETRY_AFTER_FAILED_START_MS;
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
    const threads = [...(stalled ? [...this.#threads, ...this.#stalled] : this.#threads), ...this.#retiring];
    this.#threads = [];
    if (stalled) this.#stalled.clear();
    await Promise.all(threads.map((thread) => thread.close()));
  }
}
