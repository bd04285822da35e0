/**
 * An open token: its module reference, slot, login state, mechanism list and session pool.
 *
 * Invariants:
 * - The mechanism list is read once, at open.
 * - An anchor session stays open while the token is open: PKCS#11 login state and session objects
 *   live as long as some session of the application does. It is used only on the main thread for
 *   login and for creating session objects, never lent to the pool.
 * - The PIN is kept (for re-login after a lost session) in a WeakMap, never on the object, so
 *   `util.inspect` and JSON of a Token cannot show it.
 * - A failure that means "session or login lost" is recovered once: reopen, log in again, bump
 *   `generation` (object handles cached under an older generation are looked up again), retry.
 *   A wrong or locked PIN is never retried.
 */
import type * as pkcs11 from "pkcs11js";
import { HsmError, LoginError, SessionError, UnsupportedAlgorithmError } from "../errors.js";
import { mechanismName } from "./constants.js";
import { ckrOf, SESSION_LOST, tokenError } from "./ckr.js";
import { LoginShare } from "./login.js";
import { acquireModule, retryOnFreshModule, type LoadedModule } from "./module.js";
import { inlineBudget, type Placement } from "./inline-budget.js";
import { SessionPool, type PoolOptions, type PoolStats } from "./pool.js";
import { TokenThreads, type ThreadStats } from "./token-thread.js";
import { copiesModule, type ThreadModule } from "./module-copy.js";
import { describeSelector, findToken, NoMatchingTokenError, type TokenSelector } from "./slot.js";

const CKF_LOGIN_REQUIRED = 0x4;

/** Failures of open that come from the module's view of its tokens, not from the caller's input. */
function misread(error: unknown): boolean {
  return error instanceof NoMatchingTokenError || (error instanceof HsmError && error.ckr === "CKR_USER_PIN_NOT_INITIALIZED");
}

export interface TokenOpenOptions {
  module: string;
  libraryParameters?: string;
  selector: TokenSelector;
  pin?: string;
  pool?: PoolOptions;
  /** How token threads reach the module (default "auto"): see module-copy.ts. */
  threadModule?: ThreadModule;
  /** How much lower token threads' CPU priority is (default 0; Linux only): see ThreadSetup. */
  threadNice?: number;
}

const pins = new WeakMap<Token, string>();

export class Token {
  readonly module: LoadedModule;
  readonly slot: pkcs11.Handle;
  readonly slotId: number;
  readonly label: string;
  readonly serial: string;
  readonly manufacturer: string;
  readonly model: string;
  readonly loginRequired: boolean;
  readonly mechanisms: ReadonlySet<number>;
  readonly pool: SessionPool;
  /** Bumped on every recovery; object handles cached under another generation are stale. */
  generation = 0;
  #anchor: pkcs11.Handle | undefined;
  #closed = false;
  #recovering: Promise<void> | undefined;
  #anchorQueue: Promise<unknown> = Promise.resolve();
  #threads: TokenThreads | undefined;
  readonly #loginShare: LoginShare;
  /** Whether token threads load their own copies of the module. */
  readonly #copiesModule: boolean;
  readonly #threadNice: number;

  private constructor(module: LoadedModule, selector: TokenSelector, options: TokenOpenOptions) {
    this.module = module;
    const match = findToken(module, selector);
    this.slot = match.slot;
    this.slotId = match.slotId;
    this.label = match.info.label;
    this.serial = match.info.serialNumber;
    this.manufacturer = match.info.manufacturerID.trim();
    this.model = match.info.model.trim();
    this.loginRequired = (match.info.flags & CKF_LOGIN_REQUIRED) !== 0;
    this.mechanisms = new Set(this.#call(() => module.lib.C_GetMechanismList(this.slot), "C_GetMechanismList"));
    this.pool = new SessionPool(module.lib, this.slot, this.describe(), options.pool);
    this.#loginShare = new LoginShare(module.path, this.slotId, this.describe());
    this.#copiesModule = copiesModule(options.threadModule ?? "auto", module.lib);
    this.#threadNice = options.threadNice ?? 0;
  }

  /**
   * Load the module, find the token, open the anchor session and log in. A token the module read
   * at a bad moment (missing, or without its user PIN) is read again: see retryOnFreshModule.
   */
  static open(options: TokenOpenOptions): Token {
    const module = acquireModule({ path: options.module, libraryParameters: options.libraryParameters });
    try {
      return retryOnFreshModule(module, () => Token.#openOn(module, options), misread);
    } catch (error) {
      module.release();
      throw error;
    }
  }

  /** Open on a loaded module; on failure, close what was opened and keep the module. */
  static #openOn(module: LoadedModule, options: TokenOpenOptions): Token {
    let token: Token | undefined;
    try {
      token = new Token(module, options.selector, options);
      if (options.pin !== undefined) pins.set(token, options.pin);
      token.#openAnchor();
      return token;
    } catch (error) {
      if (token) {
        token.#closed = true;
        token.pool.close();
        token.#closeSessions();
      }
      throw error;
    }
  }

  get lib(): pkcs11.PKCS11 {
    return this.module.lib;
  }

  get closed(): boolean {
    return this.#closed;
  }

  describe(): string {
    return `token '${this.label}'`;
  }

  has(mechanism: number): boolean {
    return this.mechanisms.has(mechanism);
  }

  /** Throw UnsupportedAlgorithmError, naming this token and the mechanism, unless the token offers it. */
  requireMechanism(mechanism: number, purpose: string): void {
    if (!this.mechanisms.has(mechanism)) {
      throw new UnsupportedAlgorithmError(`${this.describe()} does not offer ${mechanismName(mechanism)} (needed for ${purpose})`);
    }
  }

  /** The anchor session, for login and creating session objects (main thread, synchronous use only). */
  get anchor(): pkcs11.Handle {
    this.assertOpen();
    if (!this.#anchor) throw new SessionError(`${this.describe()} has no open session`);
    return this.#anchor;
  }

  /**
   * Run `fn` on the anchor session, one call at a time. Session objects (ephemeral keys) are created
   * here because they live as long as the session that made it, and the anchor lives as long as
   * the token is open.
   */
  withAnchor<T>(fn: (session: pkcs11.Handle) => T | Promise<T>): Promise<T> {
    const next = this.#anchorQueue.then(() => fn(this.anchor));
    this.#anchorQueue = next.catch(() => undefined);
    return next;
  }

  assertOpen(): void {
    if (this.#closed) throw new SessionError(`${this.describe()} is closed`, "ERR_HSM_CLOSED");
  }

  #openAnchor(): void {
    this.#anchor = this.pool.openSession();
    this.#login();
  }

  #login(): void {
    if (!this.loginRequired) return;
    const pin = pins.get(this);
    if (pin === undefined) {
      throw new LoginError(`${this.describe()} requires a PIN: give option \`pin\`, HSMKEY_PIN or HSMKEY_PIN_FILE`);
    }
    this.#loginShare.login(this.lib, this.#anchor!, pin);
  }

  /** Whether an error means our sessions or login are gone (worth one recovery). */
  isLost(error: unknown): boolean {
    const ckr = ckrOf(error) ?? (error as { ckr?: string } | undefined)?.ckr;
    return ckr !== undefined && SESSION_LOST.has(ckr);
  }

  /**
   * Reopen the anchor session and log in again after a lost session. Concurrent callers share one
   * recovery.
   */
  recover(): Promise<void> {
    this.assertOpen();
    this.#recovering ??= Promise.resolve()
      .then(async () => {
        this.pool.drainIdle();
        // The token threads' sessions go too: recovery starts every session afresh. (A stalled
        // thread's session goes when its call returns; recovery does not wait for that.)
        await this.#threads?.close({ stalled: false });
        if (this.#anchor) {
          try {
            this.lib.C_CloseSession(this.#anchor);
          } catch {
            // already gone
          }
          this.#anchor = undefined;
        }
        this.generation++;
        this.#openAnchor();
      })
      .finally(() => {
        this.#recovering = undefined;
      });
    return this.#recovering;
  }

  /**
   * Run `fn` with a pooled session. If the token reports a lost session or login, recover and run
   * it once more. `fn` must look object handles up through the current generation.
   */
  withSession<T>(fn: (session: pkcs11.Handle) => T | Promise<T>): Promise<T> {
    this.assertOpen();
    return this.retryOnce(() => this.pool.use(fn), () => this.pool.use(fn));
  }

  /**
   * Run `first`; if it fails because our sessions or login are lost, recover and run `again` (the
   * same work, on a pooled session) once. Any other failure, or a second one, is the caller's.
   */
  async retryOnce<T>(first: () => Promise<T>, again: () => Promise<T>): Promise<T> {
    try {
      return await first();
    } catch (error) {
      if (this.#closed || !this.isLost(error)) throw error;
      await this.recover();
      return await again();
    }
  }

  /**
   * Run an operation on a pooled session where it costs least. "thread": its final call on a pkcs11js
   * worker thread (key generation; slow operations where the token threads cannot be used). "inline": synchronously on the main thread, the only way
   * for multi-call sequences (create, wrap, destroy). "either": inline while this event-loop turn's
   * inline budget lasts and a session is idle, else on a worker thread, so that under load the
   * second core signs while the main thread builds the next tokens.
   * `fn` learns which it got (`inline`), and must look object handles up through `generation`.
   */
  run<T>(placement: Placement, fn: (session: pkcs11.Handle, inline: boolean) => T | Promise<T>, costKey?: number): Promise<T> {
    this.assertOpen();
    const onThread = (session: pkcs11.Handle) => fn(session, false);
    if (placement === "thread") return this.withSession(onThread);
    if (!inlineBudget.available()) {
      // Work dearer than a thread hop goes to a worker thread; cheap work waits for the next turn.
      if (placement === "either" && inlineBudget.worthAThread(costKey)) return this.withSession(onThread);
      return new Promise<T>((resolve, reject) => inlineBudget.defer(() => this.run(placement, fn, costKey).then(resolve, reject)));
    }
    const inline = (session: pkcs11.Handle) => fn(session, true) as T;
    let done: { value: T } | undefined;
    const started = performance.now();
    let failed: unknown;
    try {
      done = this.pool.trySync(inline);
    } catch (error) {
      failed = error;
    } finally {
      inlineBudget.charge(performance.now() - started, done ? costKey : undefined);
    }
    if (failed !== undefined) return this.retryOnce(() => Promise.reject(failed), () => this.pool.use(inline));
    if (done) return Promise.resolve(done.value);
    return placement === "either" ? this.withSession(onThread) : this.withSession(inline);
  }

  /** The token's threads (see token-thread.ts); none runs until one is picked. */
  get threads(): TokenThreads {
    this.assertOpen();
    this.#threads ??= new TokenThreads({
      library: this.module.path,
      slot: this.slot,
      loggedIn: this.loginRequired,
      timeoutMs: this.pool.operationTimeoutMs,
      describe: this.describe(),
      nice: this.#threadNice,
      ...(this.#copiesModule ? { own: { serial: this.serial, libraryParameters: this.module.libraryParameters, pin: () => pins.get(this) } } : {}),
    });
    return this.#threads;
  }

  /** Operations queued on or owed by the token threads (0 when none has started). */
  threadLoad(): number {
    return this.#threads?.pending ?? 0;
  }

  threadStats(): ThreadStats {
    return this.#threads?.stats() ?? { serving: 0, stalled: 0, pending: 0 };
  }

  stats(): PoolStats {
    return this.pool.stats();
  }

  /** Close every session and release the module (finalized when its last user releases it). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.pool.close();
    // The token threads must be gone before the module may be finalized under them, stalled ones too.
    await this.#threads?.close({ stalled: true });
    this.#closeSessions();
    this.module.release();
  }

  /** Close the anchor session and give up the login share and PIN (the module is the caller's). */
  #closeSessions(): void {
    if (this.#anchor) {
      try {
        this.lib.C_CloseSession(this.#anchor);
      } catch {
        // already gone
      }
      this.#anchor = undefined;
    }
    pins.delete(this);
    this.#loginShare.release();
  }

  #call<T>(fn: () => T, what: string): T {
    try {
      return fn();
    } catch (error) {
      throw tokenError(error, `${what} on ${this.describe()}`);
    }
  }

  toJSON(): object {
    return { module: this.module.path, token: this.label, serial: this.serial, slotId: this.slotId };
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `Token { module: '${this.module.path}', label: '${this.label}', serial: '${this.serial}', slotId: ${this.slotId}${this.#closed ? ", closed" : ""} }`;
  }
}

export { describeSelector };
