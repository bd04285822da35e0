/**
 * A key object on a token, known by its stable identity (class, CKA_ID, CKA_LABEL) and by the
 * attributes read once when it was found.
 *
 * Invariant: object handles are cached per token generation. After a recovery (new generation) the
 * handle is looked up again by identity, because a reopened token may number objects anew.
 */
import type * as pkcs11 from "pkcs11js";
import { KeyNotFoundError, SessionError, UnsupportedAlgorithmError } from "../errors.js";
import { decode, findObjects, readAttributes, type Template } from "./attributes.js";
import { CKA, CKK, CKO } from "./constants.js";
import { curveFromParams, unwrapPoint, type NamedCurve } from "./curves.js";
import type { HashName } from "./constants.js";
import type { Token } from "./token.js";
import type { ThreadKey } from "./token-thread.js";
import { sleepSync } from "./sleep.js";

export type KeyClass = "private" | "public" | "secret";
export type KeyKind = "RSA" | "EC" | "OKP" | "AES" | "HMAC";

export interface KeyFlags {
  sign: boolean;
  verify: boolean;
  encrypt: boolean;
  decrypt: boolean;
  wrap: boolean;
  unwrap: boolean;
  derive: boolean;
  extractable: boolean;
  sensitive: boolean;
  /** CKA_TOKEN: persistent on the token (false: a session object). */
  persistent: boolean;
}

export interface KeyInfo {
  class: KeyClass;
  kind: KeyKind;
  label: string | undefined;
  id: Uint8Array | undefined;
  flags: KeyFlags;
  /** RSA */
  modulusBits?: number;
  modulus?: Uint8Array;
  publicExponent?: Uint8Array;
  /** EC / OKP */
  curve?: NamedCurve;
  /** Raw public point (EC: 04||x||y; OKP: the public key). Public objects only. */
  point?: Uint8Array;
  /** Secret keys: length in bytes. */
  length?: number;
  /** HMAC keys whose CKK names a hash (CKK_SHA256_HMAC...). */
  hmacHash?: HashName;
}

/** A key whose defining attribute read empty: unusable, unless a later read shows it. */
class IncompleteKeyError extends UnsupportedAlgorithmError {}

/**
 * SoftHSM can answer a read empty while another process writes the object's file (a key being
 * generated): look again after these pauses before calling the key unusable. One look after 10 ms
 * was not always enough in the multi-process test (generating while listing).
 */
const REREAD_PAUSES_MS = [10, 40, 100];

const CLASS_OF: Record<number, KeyClass> = { [CKO.PRIVATE_KEY]: "private", [CKO.PUBLIC_KEY]: "public", [CKO.SECRET_KEY]: "secret" };
export const CKO_OF: Record<KeyClass, number> = { private: CKO.PRIVATE_KEY, public: CKO.PUBLIC_KEY, secret: CKO.SECRET_KEY };

const HMAC_KEY_TYPES: Record<number, HashName | undefined> = {
  [CKK.GENERIC_SECRET]: undefined,
  [CKK.SHA_1_HMAC]: "SHA-1",
  [CKK.SHA256_HMAC]: "SHA-256",
  [CKK.SHA384_HMAC]: "SHA-384",
  [CKK.SHA512_HMAC]: "SHA-512",
};

/** Numbers TokenKey.threadKey's refs, unique in the process. */
let refs = 0;

const COMMON = [CKA.CLASS, CKA.KEY_TYPE, CKA.LABEL, CKA.ID, CKA.TOKEN] as const;
const FLAG_ATTRS = [CKA.SIGN, CKA.VERIFY, CKA.ENCRYPT, CKA.DECRYPT, CKA.WRAP, CKA.UNWRAP, CKA.DERIVE, CKA.EXTRACTABLE, CKA.SENSITIVE] as const;

export class TokenKey {
  readonly token: Token;
  readonly info: KeyInfo;
  #handle: pkcs11.Handle;
  #generation: number;

  constructor(token: Token, handle: pkcs11.Handle, info: KeyInfo) {
    this.token = token;
    this.info = info;
    this.#handle = handle;
    this.#generation = token.generation;
  }

  /** Read an object's class, type, identity, flags and public parameters. */
  static read(token: Token, session: pkcs11.Handle, handle: pkcs11.Handle): TokenKey {
    for (const pause of REREAD_PAUSES_MS) {
      try {
        return TokenKey.#read(token, session, handle);
      } catch (error) {
        if (!(error instanceof IncompleteKeyError)) throw error;
        sleepSync(pause);
      }
    }
    return TokenKey.#read(token, session, handle);
  }

  static #read(token: Token, session: pkcs11.Handle, handle: pkcs11.Handle): TokenKey {
    const lib = token.lib;
    const base = readAttributes(lib, session, handle, [...COMMON, ...FLAG_ATTRS]);
    const cls = CLASS_OF[decode.ulong(base.get(CKA.CLASS)) ?? -1];
    const ckk = decode.ulong(base.get(CKA.KEY_TYPE)) ?? -1;
    if (!cls) throw new UnsupportedAlgorithmError(`Object on ${token.describe()} is not a key`);
    const flags: KeyFlags = {
      sign: decode.bool(base.get(CKA.SIGN)),
      verify: decode.bool(base.get(CKA.VERIFY)),
      encrypt: decode.bool(base.get(CKA.ENCRYPT)),
      decrypt: decode.bool(base.get(CKA.DECRYPT)),
      wrap: decode.bool(base.get(CKA.WRAP)),
      unwrap: decode.bool(base.get(CKA.UNWRAP)),
      derive: decode.bool(base.get(CKA.DERIVE)),
      extractable: decode.bool(base.get(CKA.EXTRACTABLE)),
      sensitive: decode.bool(base.get(CKA.SENSITIVE)),
      persistent: decode.bool(base.get(CKA.TOKEN)),
    };
    const info: KeyInfo = {
      class: cls,
      kind: "RSA",
      label: decode.string(base.get(CKA.LABEL)),
      id: decode.bytes(base.get(CKA.ID)),
      flags,
    };
    if (ckk === CKK.RSA) {
      const a = readAttributes(lib, session, handle, [CKA.MODULUS, CKA.PUBLIC_EXPONENT]);
      const modulus = a.get(CKA.MODULUS);
      if (!modulus?.length) throw new IncompleteKeyError(`RSA key on ${token.describe()} does not show its modulus`);
      info.modulus = stripZeros(modulus);
      info.modulusBits = bitLength(info.modulus);
      info.publicExponent = stripZeros(a.get(CKA.PUBLIC_EXPONENT) ?? Buffer.from([1, 0, 1]));
    } else if (ckk === CKK.EC || ckk === CKK.EC_EDWARDS) {
      const wanted = cls === "public" ? [CKA.EC_PARAMS, CKA.EC_POINT] : [CKA.EC_PARAMS];
      const a = readAttributes(lib, session, handle, wanted);
      const params = a.get(CKA.EC_PARAMS) ?? Buffer.alloc(0);
      if (params.length === 0) throw new IncompleteKeyError(`EC key on ${token.describe()} does not show its curve (CKA_EC_PARAMS)`);
      const curve = curveFromParams(params);
      if (!curve) throw new UnsupportedAlgorithmError(`EC key on ${token.describe()} uses a curve hsmkey does not know (CKA_EC_PARAMS ${params.toString("hex")})`);
      info.kind = curve === "Ed25519" || curve === "Ed448" ? "OKP" : "EC";
      info.curve = curve;
      const point = a.get(CKA.EC_POINT);
      if (point) info.point = new Uint8Array(unwrapPoint(curve, point));
    } else if (ckk === CKK.AES) {
      info.kind = "AES";
      info.length = readLength(lib, session, handle);
    } else if (ckk in HMAC_KEY_TYPES) {
      info.kind = "HMAC";
      info.length = readLength(lib, session, handle);
      const hash = HMAC_KEY_TYPES[ckk];
      if (hash) info.hmacHash = hash;
    } else {
      throw new UnsupportedAlgorithmError(`Key type 0x${ckk.toString(16)} on ${token.describe()} is not supported by hsmkey`);
    }
    return new TokenKey(token, handle, info);
  }

  /** The cached handle if it belongs to the current token generation, else undefined. */
  cachedHandle(): pkcs11.Handle | undefined {
    return this.#generation === this.token.generation ? this.#handle : undefined;
  }

  #threadKey: ThreadKey | undefined;

  /** This key for a token thread, given its current handle (see token-thread.ts). */
  threadKey(handle: pkcs11.Handle): ThreadKey {
    const known = this.#threadKey;
    if (known?.handle === handle) return known;
    this.#threadKey = { handle, ref: known?.ref ?? `k${++refs}`, identity: known?.identity ?? identityTemplate(this.info) };
    return this.#threadKey;
  }

  /** The object handle valid in this token generation (looked up again after a recovery). */
  handle(session: pkcs11.Handle): pkcs11.Handle {
    if (this.#generation === this.token.generation) return this.#handle;
    const found = findObjects(this.token.lib, session, identityTemplate(this.info), 2);
    if (found.length === 0 && this.info.class !== "public" && !loggedIn(this.token, session)) {
      // Private objects are invisible while logged out: that is a lost login, worth a recovery.
      throw new SessionError(`Login to ${this.token.describe()} was lost`, "ERR_HSM_SESSION", { ckr: "CKR_USER_NOT_LOGGED_IN" });
    }
    if (found.length !== 1) {
      throw new KeyNotFoundError(`${describeKey(this.info)} is no longer on ${this.token.describe()}`);
    }
    this.#handle = found[0]!;
    this.#generation = this.token.generation;
    return this.#handle;
  }

  describe(): string {
    return `${describeKey(this.info)} on ${this.token.describe()}`;
  }
}

/** Template that finds this very object again. */
export function identityTemplate(info: Pick<KeyInfo, "class" | "id" | "label">): Template {
  const t: Template = [{ type: CKA.CLASS, value: CKO_OF[info.class] }];
  if (info.id) t.push({ type: CKA.ID, value: Buffer.from(info.id) });
  if (info.label !== undefined) t.push({ type: CKA.LABEL, value: info.label });
  return t;
}

export function describeKey(info: Pick<KeyInfo, "class" | "id" | "label">): string {
  const parts: string[] = [];
  if (info.label !== undefined) parts.push(`label '${info.label}'`);
  if (info.id) parts.push(`id ${Buffer.from(info.id).toString("hex")}`);
  return `${info.class} key${parts.length ? ` (${parts.join(", ")})` : ""}`;
}

const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

function loggedIn(token: Token, session: pkcs11.Handle): boolean {
  if (!token.loginRequired) return true;
  const state = token.lib.C_GetSessionInfo(session).state;
  return state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
}

function readLength(lib: pkcs11.PKCS11, session: pkcs11.Handle, handle: pkcs11.Handle): number | undefined {
  return decode.ulong(readAttributes(lib, session, handle, [CKA.VALUE_LEN]).get(CKA.VALUE_LEN));
}

function stripZeros(value: Buffer): Uint8Array {
  let i = 0;
  while (i < value.length - 1 && value[i] === 0) i++;
  return new Uint8Array(value.subarray(i));
}

function bitLength(value: Uint8Array): number {
  if (value.length === 0) return 0;
  return (value.length - 1) * 8 + (32 - Math.clz32(value[0]!));
}
