/**
 * Reading and finding token objects by attribute. Values come back from pkcs11js as Buffers;
 * these helpers decode the few shapes PKCS#11 uses (CK_BBOOL, CK_ULONG, UTF-8 strings, bytes).
 */
import type * as pkcs11 from "pkcs11js";
import { ckrOf } from "./ckr.js";

export type Template = pkcs11.Template;

export function findObjects(lib: pkcs11.PKCS11, session: pkcs11.Handle, template: Template, max = 1024): pkcs11.Handle[] {
  lib.C_FindObjectsInit(session, template);
  try {
    return lib.C_FindObjects(session, max);
  } finally {
    lib.C_FindObjectsFinal(session);
  }
}

/**
 * Read attributes; a sensitive or absent attribute reads as undefined instead of failing the whole
 * call (some tokens refuse the batch when one attribute is unavailable).
 */
export function readAttributes(
  lib: pkcs11.PKCS11,
  session: pkcs11.Handle,
  object: pkcs11.Handle,
  types: readonly number[],
): Map<number, Buffer | undefined> {
  const out = new Map<number, Buffer | undefined>();
  try {
    for (const a of lib.C_GetAttributeValue(session, object, types.map((type) => ({ type })))) {
      out.set(a.type, a.value as Buffer);
    }
    return out;
  } catch (error) {
    const ckr = ckrOf(error);
    if (ckr !== "CKR_ATTRIBUTE_SENSITIVE" && ckr !== "CKR_ATTRIBUTE_TYPE_INVALID") throw error;
  }
  for (const type of types) {
    try {
      const [a] = lib.C_GetAttributeValue(session, object, [{ type }]);
      out.set(type, a?.value as Buffer | undefined);
    } catch (error) {
      const ckr = ckrOf(error);
      if (ckr !== "CKR_ATTRIBUTE_SENSITIVE" && ckr !== "CKR_ATTRIBUTE_TYPE_INVALID") throw error;
      out.set(type, undefined);
    }
  }
  return out;
}

export const decode = {
  bool(value: Buffer | undefined): boolean {
    return value !== undefined && value.length > 0 && value[0] !== 0;
  },
  ulong(value: Buffer | undefined): number | undefined {
    if (value === undefined || value.length === 0) return undefined;
    return value.length >= 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
  },
  string(value: Buffer | undefined): string | undefined {
    return value === undefined || value.length === 0 ? undefined : value.toString("utf8");
  },
  bytes(value: Buffer | undefined): Uint8Array | undefined {
    return value === undefined || value.length === 0 ? undefined : new Uint8Array(value);
  },
};
