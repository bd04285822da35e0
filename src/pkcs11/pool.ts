/**
 * A pool of PKCS#11 sessions on one slot.
 *
 * Invariant: a session is lent to exactly one operation at a time, from its *Init call to its final
 * call, so concurrent operations never meet CKR_OPERATION_ACTIVE. Callers wait in FIFO order when
 * every session is lent. A session on which anything failed is closed, never reused.
 *
 * Time limits: an operation (its wait for a session included) that takes longer than
 * `operationTimeoutMs` is rejected with ERR_HSM_TIMEOUT; PKCS#11 cannot cancel the call, so its
 * session stays lent until the call finally returns. A session idle for longer than
 * `idleCheckMs` is checked (C_GetSessionInfo) before it is lent again.
 */
import type * as pkcs11 from "pkcs11js";
import { SessionError } from "../errors.js";
import { tokenError } from "./ckr.js";

const CKF_RW_SESSION = 2;
const CKF_SERIAL_SESSION = 4;

export interface PoolOptions {
  /** Most sessions open at once (default 8). */
  maxSessions?: number;
  /** Reject an operation still pending after this many ms (default 30,000; 0: never). */
  operationTimeoutMs?: number;
  /** Check a session idle for longer than this before lending it (default 60,000). */
  idleCheckMs?: number;
}

export interface PoolStats {
  open: number;
  idle: number;
  busy: number;
  waiting: number;
}

type Waiter = (session: pkcs11.Handle | Error) => void;

export class SessionPool {
  readonly maxSessions: number;
  readonly #lib: pkcs11.PKCS11;
  readonly #slot: pkcs11.Handle;
  readonly #describe: string;
  readonly operationTimeoutMs: number;
  readonly idleCheckMs: number;
  readonly #idle: pkcs11.Handle[] = [];
  readonly #idleSince = new WeakMap<pkcs11.Handle, number>();
  readonly #busy = new Set<pkcs11.Handle>();
  readonly #waiting: Waiter[] = [];
  #closed = false;

  constructor(lib: pkcs11.PKCS11, slot: pkcs11.Handle, describe: string, options: PoolOptions = {}) {
    this.#lib = lib;
    this.#slot = slot;
    this.#describe = describe;
    this.maxSessions = Math.max(1, options.maxSessions ?? 8);
    this.operationTimeoutMs = options.operationTimeoutMs ?? 30_000;
    this.idleCheckMs = options.idleCheckMs ?? 60_000;
  }

  /** Open a session outside the pool (the caller closes it). */
  openSession(): pkcs11.Handle {
    try {
      return this.#lib.C_OpenSession(this.#slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    } catch (error) {
      throw tokenError(error, `C_OpenSession on ${this.#describe}`);
    }
  }

  /** Lend a session to `fn` for its whole duration, within the operation time limit. */
  use<T>(fn: (session: pkcs11.Handle) => T | Promise<T>): Promise<T> {
    const idle = this.#takeIdle();
    const work = idle ? this.#run(idle, fn) : this.#wait().then((session) => this.#run(session, fn));
    if (this.operationTimeoutMs <= 0) return work;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new SessionError(`An operation on ${this.#describe} took longer than ${this.operationTimeoutMs} ms`, "ERR_HSM_TIMEOUT"));
      }, this.operationTimeoutMs);
      timer.unref();
      work.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /**
   * Run `fn` synchronously on an idle session if one can be had without waiting, else return
   * `undefined`. Fast mechanisms use this to skip a promise hop.
   */
  trySync<T>(fn: (session: pkcs11.Handle) => T): { value: T } | undefined {
    const session = this.#takeIdle();
    if (!session) return undefined;
    let failed = true;
    try {
      const value = fn(session);
      failed = false;
      return { value };
    } finally {
      this.#giveBack(session, failed);
    }
  }

  async #run<T>(session: pkcs11.Handle, fn: (session: pkcs11.Handle) => T | Promise<T>): Promise<T> {
    let failed = true;
    try {
      const value = await fn(session);
      failed = false;
      return value;
    } finally {
      this.#giveBack(session, failed);
    }
  }

  #takeIdle(): pkcs11.Handle | undefined {
    if (this.#closed) throw new SessionError(`${this.#describe} is closed`, "ERR_HSM_CLOSED");
    if (this.#waiting.length > 0) return undefined; // keep FIFO fairness
    let session = this.#popIdle();
    if (!session && this.#busy.size < this.maxSessions) session = this.openSession();
    if (session) this.#busy.add(session);
    return session;
  }

  /** The most recently used idle session, checked first if it sat idle for long. */
  #popIdle(): pkcs11.Handle | undefined {
    for (;;) {
      const session = this.#idle.pop();
      if (!session) return undefined;
      const since = this.#idleSince.get(session) ?? 0;
      if (Date.now() - since < this.idleCheckMs || this.#alive(session)) return session;
      this.#closeQuietly(session);
    }
  }

  #alive(session: pkcs11.Handle): boolean {
    try {
      this.#lib.C_GetSessionInfo(session);
      return true;
    } catch {
      return false;
    }
  }

  #wait(): Promise<pkcs11.Handle> {
    return new Promise((resolve, reject) => {
      this.#waiting.push((s) => (s instanceof Error ? reject(s) : resolve(s)));
    });
  }

  /**
   * A session whose operation failed is closed rather than reused: PKCS#11 2.40 cannot cancel an
   * operation, and some tokens leave it active after an error (CKR_OPERATION_ACTIVE next time).
   */
  #giveBack(session: pkcs11.Handle, failed: boolean): void {
    this.#busy.delete(session);
    if (failed || this.#closed) {
      this.#closeQuietly(session);
    } else {
      this.#idleSince.set(session, Date.now());
      this.#idle.push(session);
    }
    this.#serveWaiters();
  }

  #serveWaiters(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      let session = this.#popIdle();
      if (!session && this.#busy.size < this.maxSessions) {
        try {
          session = this.openSession();
        } catch (error) {
          this.#waiting.shift()!(error as Error);
          continue;
        }
      }
      if (!session) return;
      this.#busy.add(session);
      this.#waiting.shift()!(session);
    }
  }

  /** Close idle sessions (e.g. after the token said they are dead); busy ones close when returned. */
  drainIdle(): void {
    for (const s of this.#idle.splice(0)) this.#closeQuietly(s);
  }

  stats(): PoolStats {
    return { open: this.#idle.length + this.#busy.size, idle: this.#idle.length, busy: this.#busy.size, waiting: this.#waiting.length };
  }

  /** Close every idle session now and every lent one when it comes back; reject the waiters. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.drainIdle();
    for (const w of this.#waiting.splice(0)) w(new SessionError(`${this.#describe} is closed`, "ERR_HSM_CLOSED"));
  }

  #closeQuietly(session: pkcs11.Handle): void {
    try {
      this.#lib.C_CloseSession(session);
    } catch {
      // The handle may already be invalid; nothing else to release.
    }
  }
}
