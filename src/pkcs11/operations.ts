/**
 * Single-part cryptographic operations on token keys.
 *
 * Each operation holds one session from its *Init to its final call. Signing and private-key
 * decryption that is `slow` (RSA) or dearer than a thread hop runs whole on the token threads
 * (token-thread.ts), so that neither its Init nor its final call blocks the event loop; cheap
 * signatures run synchronously on an idle pooled session until the event-loop turn's inline budget
 * is spent (inline-budget.ts), then on the token threads too. Where the threads cannot be used
 * (p11-kit's client: a separate login per thread) pkcs11js' worker threads take the final calls.
 * Temporary objects (derived secrets, wrap/unwrap carriers) are destroyed before the session goes
 * back to the pool, whatever happens.
 */
import type * as pkcs11 from "pkcs11js";
import { decode, readAttributes, type Template } from "./attributes.js";
import { ckrOf, tokenError } from "./ckr.js";
import { CKA, CKK, CKO, mechanismName } from "./constants.js";
import { inlineBudget, type Placement } from "./inline-budget.js";
import type { ThreadOp } from "./token-thread.js";
import type { TokenKey } from "./token-key.js";

export type Mechanism = pkcs11.Mechanism;

/** pkcs11js passes NULL for an empty Buffer; a zero-length view of a real buffer is not NULL. */
const EMPTY = Buffer.alloc(1).subarray(0, 0);

export function bytes(data: ArrayBuffer | ArrayBufferView): Buffer {
  const b = ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
  return b.length === 0 ? EMPTY : b;
}

type Body<T> = (lib: pkcs11.PKCS11, session: pkcs11.Handle, handle: pkcs11.Handle, inline: boolean) => T | Promise<T>;

/** What failed, for an error message; built only when something did (it looks the name up). */
const describe = (call: string, mechanism: Mechanism, key: TokenKey) => `${call} (${mechanismName(mechanism.mechanism)}) with ${key.describe()}`;

function run<T>(key: TokenKey, placement: Placement, call: string, mechanism: Mechanism, fn: Body<T>, costKey?: number): Promise<T> {
  const token = key.token;
  return token.run(placement, (session, inline) => fn(token.lib, session, key.handle(session), inline), costKey).catch((error: unknown) => {
    throw tokenError(error, describe(call, mechanism, key));
  });
}

/** Jobs queued on the token threads beyond which the main thread signs cheap signatures inline too. */
const THREAD_DEPTH = 8;

/** Slow mechanisms always run on a worker thread; fast ones inline while the turn's budget lasts. */
const placementOf = (slow: boolean): Placement => (slow ? "thread" : "either");

/**
 * Run a single-part operation whole (Init and final) on a token thread. A failure there counts as
 * the first attempt: a lost session is recovered and the operation tried once more on a pooled
 * session; a job the thread never got to runs on the ordinary path; anything else is reported as
 * it is.
 */
function onThread(key: TokenKey, op: ThreadOp, mechanism: Mechanism, data: Buffer, outLength: number, body: Body<Buffer>, slow: boolean): Promise<Buffer> {
  const token = key.token;
  const call = op === "sign" ? "C_Sign" : "C_Decrypt";
  const handle = token.threads.usable ? key.cachedHandle() : undefined;
  const ordinary = () => run(key, placementOf(slow), call, mechanism, body, mechanism.mechanism);
  if (!handle) return ordinary();
  const first = () => token.threads.pick(mechanism.mechanism).run(op, mechanism, handle, data, outLength);
  const again = () => token.pool.use((session) => body(token.lib, session, key.handle(session), false));
  return token.retryOnce(first, again).catch((error: unknown) => {
    if ((error as { notAttempted?: boolean }).notAttempted && !token.closed) return ordinary();
    throw tokenError(error, describe(call, mechanism, key));
  });
}

export function sign(key: TokenKey, mechanism: Mechanism, data: Buffer, outLength: number, slow: boolean): Promise<Buffer> {
  const token = key.token;
  const m = mechanism.mechanism;
  const body: Body<Buffer> = (lib, session, handle, inline) => {
    lib.C_SignInit(session, mechanism, handle);
    const out = Buffer.alloc(outLength);
    if (!inline) return lib.C_SignAsync(session, data, out);
    const signature = lib.C_Sign(session, data, out);
    token.threads.done(m);
    return signature;
  };
  // Slow and middling signatures (RSA; a network HSM's round trip) run on token threads. Cheap ones
  // run inline while this turn's budget lasts and the threads are idle, else on the threads, in
  // batches; when the threads are swamped the main thread signs too, if the mechanism spreads over
  // threads at all (see spread-choice.ts).
  if (slow || !inlineBudget.cheap(m)) return onThread(key, "sign", mechanism, data, outLength, body, slow);
  const busy = token.threadLoad();
  const toThread = !inlineBudget.available() || (busy > 0 && (busy < THREAD_DEPTH || !token.threads.spreads(m)));
  return toThread ? onThread(key, "sign", mechanism, data, outLength, body, slow) : run(key, "either", "C_Sign", mechanism, body, m);
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
  return run(key, placementOf(slow), "C_Encrypt", mechanism, (lib, session, handle, inline) => {
    lib.C_EncryptInit(session, mechanism, handle);
    const out = Buffer.alloc(Math.max(outLength, 1));
    return inline ? lib.C_Encrypt(session, data, out) : lib.C_EncryptAsync(session, data, out);
  }, mechanism.mechanism);
}

export function decrypt(key: TokenKey, mechanism: Mechanism, data: Buffer, outLength: number, slow: boolean): Promise<Buffer> {
  const body: Body<Buffer> = (lib, session, handle, inline) => {
    lib.C_DecryptInit(session, mechanism, handle);
    const out = Buffer.alloc(Math.max(outLength, 1));
    return inline ? lib.C_Decrypt(session, data, out) : lib.C_DecryptAsync(session, data, out);
  };
  // Private-key decryption (RSA-OAEP) runs whole on a token thread, its Init call included.
  if (slow) return onThread(key, "decrypt", mechanism, data, outLength, body, slow);
  return run(key, "either", "C_Decrypt", mechanism, body, mechanism.mechanism);
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

/** Derive `length` bytes (e.g. ECDH's shared secret) and return them; the derived object is destroyed. */
export function deriveSecret(key: TokenKey, mechanism: Mechanism, length: number): Promise<Buffer> {
  return run(key, "inline", "C_DeriveKey", mechanism, (lib, session, handle) => {
    const derived = lib.C_DeriveKey(session, mechanism, handle, carrierTemplate([{ type: CKA.VALUE_LEN, value: length }]));
    return readValueAndDestroy(lib, session, derived);
  });
}

/** Wrap raw key bytes with a token key (C_WrapKey over a throwaway carrier object). */
export function wrapBytes(key: TokenKey, mechanism: Mechanism, keyBytes: Buffer): Promise<Buffer> {
  return run(key, "inline", "C_WrapKey", mechanism, (lib, session, handle) => {
    const carrier = lib.C_CreateObject(session, carrierTemplate([{ type: CKA.VALUE, value: keyBytes }]));
    try {
      return lib.C_WrapKey(session, mechanism, handle, carrier, Buffer.alloc(keyBytes.length + 64));
    } finally {
      lib.C_DestroyObject(session, carrier);
    }
  });
}

/** Unwrap with a token key into a throwaway carrier and return its bytes. */
export function unwrapBytes(key: TokenKey, mechanism: Mechanism, wrapped: Buffer): Promise<Buffer> {
  return run(key, "inline", "C_UnwrapKey", mechanism, (lib, session, handle) => {
    const carrier = lib.C_UnwrapKey(session, mechanism, handle, wrapped, carrierTemplate());
    return readValueAndDestroy(lib, session, carrier);
  });
}

export { decode };
