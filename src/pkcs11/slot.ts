/**
 * Finding a token among a module's slots: by label, serial number or slot id.
 * Slot ids are not stable on every module (SoftHSM makes them random): prefer the label.
 *
 * C_GetTokenInfo is retried on CKR_GENERAL_ERROR: SoftHSM answers so while another process
 * rewrites the token's file (as every C_Login does). A token missing from the list for the same
 * reason is for the caller to read again: see retryOnFreshModule.
 */
import type * as pkcs11 from "pkcs11js";
import { TokenNotFoundError } from "../errors.js";
import { ckrOf, tokenError } from "./ckr.js";
import type { LoadedModule } from "./module.js";
import { sleepSync } from "./sleep.js";

export interface TokenSelector {
  /** CKA token label (CK_TOKEN_INFO.label, trailing blanks ignored). */
  token?: string;
  /** CK_TOKEN_INFO.serialNumber. */
  serial?: string;
  /** Slot id as the module numbers it. */
  slotId?: number;
}

export interface SlotMatch {
  slot: pkcs11.Handle;
  slotId: number;
  info: pkcs11.TokenInfo;
}

const CKF_TOKEN_INITIALIZED = 0x400;

export function slotIdOf(slot: pkcs11.Handle): number {
  return slot.length >= 8 ? Number(slot.readBigUInt64LE(0)) : slot.readUInt32LE(0);
}

export function describeSelector(selector: TokenSelector): string {
  const parts: string[] = [];
  if (selector.token !== undefined) parts.push(`label '${selector.token}'`);
  if (selector.serial !== undefined) parts.push(`serial '${selector.serial}'`);
  if (selector.slotId !== undefined) parts.push(`slot id ${selector.slotId}`);
  return parts.length ? parts.join(", ") : "any initialised token";
}

const INFO_ATTEMPTS = 4;

/** No token matches the selector (as opposed to several): the module may have misread its tokens. */
export class NoMatchingTokenError extends TokenNotFoundError {
  override name = "TokenNotFoundError";
}

/** Token info with the label and serial trimmed; retried while the token's file is being rewritten. */
export function tokenInfo(lib: pkcs11.PKCS11, slot: pkcs11.Handle): pkcs11.TokenInfo {
  for (let attempt = 1; ; attempt++) {
    try {
      const info = lib.C_GetTokenInfo(slot);
      return { ...info, label: info.label.trimEnd(), serialNumber: info.serialNumber.trim() };
    } catch (error) {
      if (ckrOf(error) !== "CKR_GENERAL_ERROR" || attempt === INFO_ATTEMPTS) throw tokenError(error, "C_GetTokenInfo");
      sleepSync(5 * attempt);
    }
  }
}

export function isInitialized(info: pkcs11.TokenInfo): boolean {
  return (info.flags & CKF_TOKEN_INITIALIZED) !== 0;
}

/** All slots holding an initialised token. */
export function listTokens(module: LoadedModule): SlotMatch[] {
  const out: SlotMatch[] = [];
  for (const slot of module.lib.C_GetSlotList(true)) {
    const info = tokenInfo(module.lib, slot);
    if (isInitialized(info)) out.push({ slot, slotId: slotIdOf(slot), info });
  }
  return out;
}

/** The one token matching the selector; with an empty selector, the only initialised token. */
export function findToken(module: LoadedModule, selector: TokenSelector): SlotMatch {
  const tokens = listTokens(module);
  const matches = tokens.filter(
    (t) =>
      (selector.token === undefined || t.info.label === selector.token) &&
      (selector.serial === undefined || t.info.serialNumber === selector.serial) &&
      (selector.slotId === undefined || t.slotId === selector.slotId),
  );
  const wanted = describeSelector(selector);
  if (matches.length === 0) {
    const seen = tokens.map((t) => `'${t.info.label}'`).join(", ") || "none";
    throw new NoMatchingTokenError(`No token with ${wanted} in ${module.path} (tokens present: ${seen})`);
  }
  if (matches.length > 1) {
    throw new TokenNotFoundError(`${matches.length} tokens match ${wanted} in ${module.path}; select one by serial or slot id`);
  }
  return matches[0]!;
}
