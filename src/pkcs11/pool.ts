/**
 * A pool of PKCS#11 sessions on one slot.
 *
 * Invariant: a session is lent to exactly one operation at a time, from its *Init call to its final
 * call, so concurrent operations never meet CKR_OPERATION_ACTIVE. Callers wait in FIFO order when
 * every session is lent. A session on which anything failed is closed, never reused.
 */
import type * as pkcs11 from "pkcs11js";
import { SessionError } from "../errors.js";
import { tokenError } from "./ckr.js";

const CKF_RW_SESSION = 2;
const CKF_SERIAL_SESSION = 4;

export interface PoolOptions {
  /** Most sessions open at once (default 8). */
  maxSessions?: number;
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
  readonly #idle: pkcs11.Handle[] = [];
  readonly #busy = new Set<pkcs11.Handle>();
  readonly #waiting: Waiter[] = [];
  #closed = false;

  constructor(lib: pkcs11.PKCS11, slot: pkcs11.Handle, describe: string, options: PoolOptions = {}) {
    this.#lib = lib;
    this.#slot = slot;
    this.#describe = describe;
    this.maxSessions = Math.max(1, options.maxSessions ?? 8);
  }

  /** Open a session outside the pool (the caller closes it). */
  openSession(): pkcs11.Handle {
    try {
      return this.#lib.C_OpenSession(this.#slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    } catch (error) {
      throw tokenError(error, `C_OpenSession on ${this.#describe}`);
    }
  }

  /** Lend a session to `fn` for its whole duration. */
  async use<T>(fn: (session: pkcs11.Handle) => T | Promise<T>): Promise<T> {
    const session = this.#takeIdle() ?? (await this.#wait());
    return this.#run(session, fn);
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
    let session = this.#idle.pop();
    if (!session && this.#busy.size < this.maxSessions) session = this.openSession();
    if (session) this.#busy.add(session);
    return session;
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
      this.#idle.push(session);
    }
    this.#serveWaiters();
  }

  #serveWaiters(): void {
    while (this.#waiting.length > 0 && !this.#closed) {
      let session = this.#idle.pop();
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
