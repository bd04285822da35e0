/**
 * Finding a key by reference: its label, its CKA_ID, or a `pkcs11:` URI (object, id, type).
 * A reference names one key: a private key with its public half (paired by CKA_ID, else by label),
 * a secret key, or a lone public key. More than one match of a class is an error, never a guess.
 */
import type * as pkcs11 from "pkcs11js";
import { InvalidInputError, KeyNotFoundError } from "../errors.js";
import { findObjects, type Template } from "./attributes.js";
import { CKA } from "./constants.js";
import { CKO_OF, TokenKey, type KeyClass } from "./token-key.js";
import type { Token } from "./token.js";
import { isPkcs11Uri, parsePkcs11Uri, redactPkcs11Uri } from "./uri.js";

export interface KeyReference {
  label?: string;
  /** CKA_ID as bytes or hex. */
  id?: Uint8Array | string;
  /** A pkcs11: URI (object=, id=, type=). */
  uri?: string;
}

/** A label, a pkcs11: URI, or an object naming label / id / uri. */
export type KeyRef = string | KeyReference;

export interface ResolvedReference {
  label?: string;
  id?: Uint8Array;
  classes: KeyClass[];
}

export interface FoundKey {
  privateKey?: TokenKey;
  publicKey?: TokenKey;
  secretKey?: TokenKey;
}

export function resolveReference(ref: KeyRef): ResolvedReference {
  const r: KeyReference = typeof ref === "string" ? (isPkcs11Uri(ref) ? { uri: ref } : { label: ref }) : ref;
  const out: ResolvedReference = { classes: ["private", "secret", "public"] };
  if (r.uri !== undefined) {
    const uri = parsePkcs11Uri(r.uri);
    if (uri.object !== undefined) out.label = uri.object;
    if (uri.id !== undefined) out.id = uri.id;
    if (uri.type === "private" || uri.type === "public") out.classes = [uri.type];
    else if (uri.type === "secret-key") out.classes = ["secret"];
    else if (uri.type !== undefined) throw new InvalidInputError(`pkcs11: URI type '${uri.type}' does not name a key`, "ERR_HSM_URI");
  }
  if (r.label !== undefined) out.label = r.label;
  if (r.id !== undefined) out.id = typeof r.id === "string" ? parseHexId(r.id) : r.id;
  if (out.label === undefined && out.id === undefined) {
    throw new InvalidInputError("A key reference needs a label, an id, or a pkcs11: URI with object= or id=");
  }
  return out;
}

export function describeReference(ref: KeyRef): string {
  if (typeof ref === "string") return isPkcs11Uri(ref) ? `'${redactPkcs11Uri(ref)}'` : `label '${ref}'`;
  const parts: string[] = [];
  if (ref.label !== undefined) parts.push(`label '${ref.label}'`);
  if (ref.id !== undefined) parts.push(`id ${typeof ref.id === "string" ? ref.id : Buffer.from(ref.id).toString("hex")}`);
  if (ref.uri !== undefined) parts.push(`'${redactPkcs11Uri(ref.uri)}'`);
  return parts.join(", ");
}

function parseHexId(hex: string): Uint8Array {
  const clean = hex.replace(/:/g, "");
  if (!/^([0-9a-fA-F]{2})+$/.test(clean)) throw new InvalidInputError(`Key id '${hex}' is not hex`);
  return new Uint8Array(Buffer.from(clean, "hex"));
}

function template(cls: KeyClass, label: string | undefined, id: Uint8Array | undefined): Template {
  const t: Template = [{ type: CKA.CLASS, value: CKO_OF[cls] }];
  if (label !== undefined) t.push({ type: CKA.LABEL, value: label });
  if (id !== undefined) t.push({ type: CKA.ID, value: Buffer.from(id) });
  return t;
}

function findOne(token: Token, session: pkcs11.Handle, cls: KeyClass, label: string | undefined, id: Uint8Array | undefined, what: string): TokenKey | undefined {
  const found = findObjects(token.lib, session, template(cls, label, id), 2);
  if (found.length > 1) {
    throw new KeyNotFoundError(`More than one ${cls} key matches ${what} on ${token.describe()}; use a unique label or id`, "ERR_HSM_KEY_AMBIGUOUS");
  }
  return found.length ? TokenKey.read(token, session, found[0]!) : undefined;
}

/** Find the key `ref` names, or throw KeyNotFoundError naming the reference. */
export function findKey(token: Token, ref: KeyRef): Promise<FoundKey> {
  const r = resolveReference(ref);
  const what = describeReference(ref);
  return token.withSession((session) => {
    const out: FoundKey = {};
    if (r.classes.includes("private")) {
      const priv = findOne(token, session, "private", r.label, r.id, what);
      if (priv) {
        out.privateKey = priv;
        // The public half: same CKA_ID if the private key has one, else the same label.
        const pub = priv.info.id?.length
          ? findOne(token, session, "public", undefined, priv.info.id, what)
          : findOne(token, session, "public", priv.info.label, undefined, what);
        if (pub) out.publicKey = pub;
        return out;
      }
    }
    if (r.classes.includes("secret")) {
      const secret = findOne(token, session, "secret", r.label, r.id, what);
      if (secret) return { secretKey: secret };
    }
    if (r.classes.includes("public")) {
      const pub = findOne(token, session, "public", r.label, r.id, what);
      if (pub) return { publicKey: pub };
    }
    throw new KeyNotFoundError(`No key with ${what} on ${token.describe()}`);
  });
}

/** Every key object on the token (token and session objects), read once. */
export function listKeyObjects(token: Token): Promise<TokenKey[]> {
  return token.withSession((session) => {
    const out: TokenKey[] = [];
    for (const cls of ["private", "secret", "public"] as const) {
      for (const h of findObjects(token.lib, session, [{ type: CKA.CLASS, value: CKO_OF[cls] }], 100000)) {
        try {
          out.push(TokenKey.read(token, session, h));
        } catch {
          // a key type hsmkey does not handle: not listed
        }
      }
    }
    return out;
  });
}

/** Number of objects on the token, token objects and this application's session objects apart. */
export function countObjects(token: Token): Promise<{ token: number; session: number }> {
  return token.withSession((session) => ({
    token: findObjects(token.lib, session, [{ type: CKA.TOKEN, value: true }], 100000).length,
    session: findObjects(token.lib, session, [{ type: CKA.TOKEN, value: false }], 100000).length,
  }));
}
