/**
 * Cryptographic operations on token keys: sign, verify, encrypt, decrypt, derive, wrap, unwrap.
 *
 * Each operation holds one session from its first call to its last. Work that is `slow` (RSA) or
 * dearer than a thread hop runs whole on the token threads (token-thread.ts), so that none of its
 * calls blocks the event loop; cheap work runs synchronously on an idle pooled session until the
 * event-loop turn's inline budget is spent (inline-budget.ts), then on the token threads too.
 * Where the threads cannot be used (p11-kit's client: a separate login per thread) pkcs11js'
 * worker threads take the final calls. Temporary objects (derived secrets, wrap/unwrap carriers)
 * are destroyed before the session goes back to the pool, or the thread takes its next job,
 * whatever happens.
 */
import type * as pkcs11 from "pkcs11js";
import { decode, readAttributes, type Template } from "./attributes.js";
import { ckrOf, tokenError } from "./ckr.js";
import { CKA, CKK, CKO, mechanismName } from "./constants.js";
import { inlineBudget, type Placement } from "./inline-budget.js";
import type { ThreadWork } from "./token-thread.js";
import type { TokenKey } from "./token-key.js";

export type Mechanism = pkcs11.Mechanism;

/** pkcs11js passes NULL for an empty Buffer; a zero-length view of a real buffer is not NULL. */
const EMPTY = Buffer.alloc(1).subarray(0, 0);

export function bytes(data: ArrayBuffer | ArrayBufferView): Buffer {
  const b = ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
  return b.length === 0 ? EMPTY : b;
}

/** The work on a pooled session: all synchronous when `inline` (a failure must throw, not reject). */
type Body<T> = (lib: pkcs11.PKCS11, session: pkcs11.Handle, handle: pkcs11.Handle, inline: boolean) => T | Promise<T>;

/** What failed, for an error message; built only when something did (it looks the name up). */
const describe = (call: string, mechanism: Mechanism, key: TokenKey) => `${call} (${mechanismName(mechanism.mechanism)}) with ${key.describe()}`;

function run<T>(key: TokenKey, placement: Placement, call: string, mechanism: Mechanism, fn: Body<T>, costKey?: number): Promise<T> {
  const token = key.token;
  return token.run(placement, (session, inline) => fn(token.lib, session, key.handle(session), inline), costKey).catch((error: unknown) => {
    throw tokenError(error, describe(call, mechanism, key));
  });
}

/** Jobs queued on the token threads beyond which the main thread runs cheap operations inline too. */
const THREAD_DEPTH = 8;

/** Slow mechanisms always run on a worker thread; fast ones inline while the turn's budget lasts. */
const placementOf = (slow: boolean): Placement => (slow ? "thread" : "either");

/**
 * Run an operation on one key where it costs least. Slow and middling ones (RSA; a network HSM's
 * round trip) run whole on the token threads. Cheap ones run inline while this turn's budget
 * lasts and the threads are idle, else on the threads, in batches; when the threads are swamped
 * the main thread runs them too, where that helps. With module instances of their own (the main
 * thread's is another one): when the threads are the bottleneck (TokenThreads.saturated), and
 * cheap work then keeps to one thread fewer than the cores (TokenThreads.pick). With one shared
 * instance: when the mechanism spreads over threads at all (spread-choice.ts), since otherwise the
 * main thread would queue on the same lock inside the token. `body` is the same work on a pooled
 * session, for the other paths.
 *
 * Measured with jose at 64 callers on SoftHSM (own instances, 2 cores), ES256 against the raw loop:
 * the main thread signing beside one thread 1.02-1.08x; beside two threads (three signers on two
 * cores) 0.86-0.93x; not signing, one thread 0.80-0.89x. HS256, where jose's work is the
 * bottleneck, went from 42k/s to 44-51k/s when the main thread stopped signing beside an
 * unsaturated thread.
 */
function placed(key: TokenKey, work: ThreadWork, call: string, body: Body<Buffer>, slow: boolean): Promise<Buffer> {
  const token = key.token;
  const m = work.mechanism.mechanism;
  const cheap = !slow && inlineBudget.cheap(m);
  if (cheap) {
    const busy = token.threadLoad();
    const beside = token.threads.ownInstances ? token.threads.saturated() : token.threads.spreads(m);
    if (inlineBudget.available() && (busy === 0 || (busy >= THREAD_DEPTH && beside))) {
      return run(key, "either", call, work.mechanism, (lib, session, handle, inline) => {
        const output = body(lib, session, handle, inline);
        if (inline) token.threads.done(m);
        return output;
      }, m);
    }
  }
  return onThread(key, work, call, body, slow, cheap);
}

/**
 * Run an operation whole on a token thread. A failure there counts as the first attempt: a lost
 * session is recovered and the operation tried once more on a pooled session; an operation the
 * thread never got to runs on the ordinary path; anything else is reported as it is.
 */
function onThread(key: TokenKey, work: ThreadWork, call: string, body: Body<Buffer>, slow: boolean, cheap: boolean): Promise<Buffer> {
  const token = key.token;
  const { mechanism } = work;
  const handle = token.threads.usable ? key.cachedHandle() : undefined;
  const threadKey = handle === undefined ? undefined : key.threadKey(handle);
  const ordinary = () => run(key, placementOf(slow), call, mechanism, body, mechanism.mechanism);
  if (!threadKey || !token.threads.serves(threadKey, key.info.flags.persistent)) return ordinary();
  const first = () => token.threads.pick(mechanism.mechanism, cheap).run(work, threadKey);
  const again = () => token.pool.use((session) => body(token.lib, session, key.handle(session), false));
  return token.retryOnce(first, again).catch((error: unknown) => {
    if ((error as { notAttempted?: boolean }).notAttempted && !token.closed) return ordinary();
    throw tokenError(error, describe(call, mechanism, key));
  });
}

export function sign(key: TokenKey, mechanism: Mechanism, data: Buffer, outLength: number, slow: boolean): Promise<Buffer> {
  return placed(key, { op: "sign", mechanism, data, outLength }, "C_Sign", (lib, session, handle, inline) => {
    lib.C_SignInit(session, mechanism, handle);
    const out = Buffer.alloc(outLength);
    return inline ? lib.C_Sign(session, data, out) : lib.C_SignAsync(session, data, out);
  }, slow);
}

export function verify(key: TokenKey, mechanism: Mechanism, data: Buffer, signature: Buffer): Promise<boolean> {
  return run(key, "inline", "C_Verify", mechanism, (lib, session, handle) => {
    lib.C_VerifyInit(session, mechanism, handle);
    try {
      return lib.C_Verify(session, data, signature.length ? signature : EMPTY);
    } catch (error) {
      // A bad signature is an answer, not a failure (C_Verify ends the operation either way).
      const ckr = ckrOf(error);
      if (ckr === "CKR_SIGNATURE_INVALID" || ckr === "CKR_SIGNATURE_LEN_RANGE") return false;
      throw error;
    }
  });
}

export function encrypt(key: TokenKey, mechanism: Mechanism, data: Buffer, outLength: number, slow: boolean): Promise<Buffer> {
  return placed(key, { op: "encrypt", mechanism, data, outLength }, "C_Encrypt", (lib, session, handle, inline) => {
    lib.C_EncryptInit(session, mechanism, handle);
    const out = Buffer.alloc(Math.max(outLength, 1));
    return inline ? lib.C_Encrypt(session, data, out) : lib.C_EncryptAsync(session, data, out);
  }, slow);
}

export function decrypt(key: TokenKey, mechanism: Mechanism, data: Buffer, outLength: number, slow: boolean): Promise<Buffer> {
  return placed(key, { op: "decrypt", mechanism, data, outLength }, "C_Decrypt", (lib, session, handle, inline) => {
    lib.C_DecryptInit(session, mechanism, handle);
    const out = Buffer.alloc(Math.max(outLength, 1));
    return inline ? lib.C_Decrypt(session, data, out) : lib.C_DecryptAsync(session, data, out);
  }, slow);
}

/** Template of a throwaway secret whose value may be read: a session object, never on the token. */
function carrierTemplate(extra: Template = []): Template {
  return [
    { type: CKA.CLASS, value: CKO.SECRET_KEY },
    { type: CKA.KEY_TYPE, value: CKK.GENERIC_SECRET },
    { type: CKA.TOKEN, value: false },
    { type: CKA.PRIVATE, value: true },
    { type: CKA.SENSITIVE, value: false },
    { type: CKA.EXTRACTABLE, value: true },
    ...extra,
  ];
}

function readValueAndDestroy(lib: pkcs11.PKCS11, session: pkcs11.Handle, object: pkcs11.Handle): Buffer {
  try {
    const value = readAttributes(lib, session, object, [CKA.VALUE]).get(CKA.VALUE);
    if (!value) throw new Error("the token did not reveal the value of a non-sensitive carrier object");
    return Buffer.from(value);
  } finally {
    lib.C_DestroyObject(session, object);
  }
}

/**
 * Multi-call operations (derive, wrap, unwrap: a carrier object made, read and destroyed) always
 * run on the token threads, as slow ones do: their templates and extra calls cost the main thread
 * more than the hop. Measured on SoftHSM: ECDH-ES JWE decryption 1.4x faster at concurrency 64 and
 * 1.04x at 1; A256KW 1.12-1.2x at 64, 0.85-0.95x at 1. Their `body` (the path where token threads
 * cannot be used) runs the main call on a pkcs11js worker thread.
 */
const MULTI_CALL = true;

/** Derive `length` bytes (e.g. ECDH's shared secret) and return them; the derived object is destroyed. */
export function deriveSecret(key: TokenKey, mechanism: Mechanism, length: number): Promise<Buffer> {
  const template = carrierTemplate([{ type: CKA.VALUE_LEN, value: length }]);
  const work: ThreadWork = { op: "derive", mechanism, data: EMPTY, outLength: length, template };
  return placed(key, work, "C_DeriveKey", async (lib, session, handle) => readValueAndDestroy(lib, session, await lib.C_DeriveKeyAsync(session, mechanism, handle, template)), MULTI_CALL);
}

/** Wrap raw key bytes with a token key (C_WrapKey over a throwaway carrier object). */
export function wrapBytes(key: TokenKey, mechanism: Mechanism, keyBytes: Buffer): Promise<Buffer> {
  const template = carrierTemplate([{ type: CKA.VALUE, value: keyBytes }]);
  const work: ThreadWork = { op: "wrap", mechanism, data: EMPTY, outLength: keyBytes.length + 64, template };
  return placed(key, work, "C_WrapKey", (lib, session, handle) => {
    const carrier = lib.C_CreateObject(session, template);
    return lib.C_WrapKeyAsync(session, mechanism, handle, carrier, Buffer.alloc(work.outLength)).finally(() => lib.C_DestroyObject(session, carrier));
  }, MULTI_CALL);
}

/** Unwrap with a token key into a throwaway carrier and return its bytes. */
export function unwrapBytes(key: TokenKey, mechanism: Mechanism, wrapped: Buffer): Promise<Buffer> {
  const template = carrierTemplate();
  const work: ThreadWork = { op: "unwrap", mechanism, data: wrapped, outLength: 0, template };
  return placed(key, work, "C_UnwrapKey", async (lib, session, handle) => readValueAndDestroy(lib, session, await lib.C_UnwrapKeyAsync(session, mechanism, handle, wrapped, template)), MULTI_CALL);
}

export { decode };
