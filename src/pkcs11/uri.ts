/**
 * RFC 7512 `pkcs11:` URIs: parsing and formatting.
 *
 * A URI names a token (and optionally an object on it) by its attributes, e.g.
 * `pkcs11:token=prod;object=signing-key;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so`.
 * Path attributes are separated by `;`, query attributes (after `?`) by `&`. Values are
 * percent-decoded; `id` is raw bytes, every other value is UTF-8 text.
 *
 * Errors never contain a `pin-value`: whenever a message quotes the URI it is redacted first.
 */
import { InvalidInputError } from "../errors.js";

export type Pkcs11ObjectType = "private" | "public" | "secret-key" | "cert" | "data";

export interface Pkcs11Uri {
  /** Token label (CK_TOKEN_INFO.label, without padding). */
  token?: string;
  /** Token manufacturer (CK_TOKEN_INFO.manufacturerID). */
  manufacturer?: string;
  /** Token model (CK_TOKEN_INFO.model). */
  model?: string;
  /** Token serial number (CK_TOKEN_INFO.serialNumber). */
  serial?: string;
  /** Slot id (CK_SLOT_ID), decimal. */
  slotId?: number;
  slotDescription?: string;
  slotManufacturer?: string;
  libraryManufacturer?: string;
  libraryDescription?: string;
  /** Object label (CKA_LABEL). */
  object?: string;
  /** Object id (CKA_ID), raw bytes. */
  id?: Uint8Array;
  /** Object class. */
  type?: Pkcs11ObjectType;
  /** Path of the PKCS#11 module to load. */
  modulePath?: string;
  /** Name of the PKCS#11 module (without path or suffix). */
  moduleName?: string;
  /** The PIN itself. Never printed in errors; omitted by formatPkcs11Uri unless asked for. */
  pinValue?: string;
  /** Where to read the PIN from (e.g. `file:/path/to/pin`). */
  pinSource?: string;
}

type StringKey = Exclude<keyof Pkcs11Uri, "slotId" | "id" | "type">;

const OBJECT_TYPES: ReadonlySet<string> = new Set(["private", "public", "secret-key", "cert", "data"]);

/** Path attribute name → property (null: accepted and ignored). */
const PATH_ATTRIBUTES: ReadonlyMap<string, keyof Pkcs11Uri | null> = new Map<string, keyof Pkcs11Uri | null>([
  ["token", "token"],
  ["manufacturer", "manufacturer"],
  ["model", "model"],
  ["serial", "serial"],
  ["slot-id", "slotId"],
  ["slot-description", "slotDescription"],
  ["slot-manufacturer", "slotManufacturer"],
  ["library-manufacturer", "libraryManufacturer"],
  ["library-description", "libraryDescription"],
  ["library-version", null],
  ["object", "object"],
  ["id", "id"],
  ["type", "type"],
]);

const QUERY_ATTRIBUTES: ReadonlyMap<string, StringKey> = new Map<string, StringKey>([
  ["pin-value", "pinValue"],
  ["pin-source", "pinSource"],
  ["module-path", "modulePath"],
  ["module-name", "moduleName"],
]);

/** True when `value` is a string with the `pkcs11:` scheme (scheme compared case-insensitively). */
export function isPkcs11Uri(value: unknown): value is string {
  return typeof value === "string" && /^pkcs11:/i.test(value);
}

/** Replace every pin-value in URI text with `***` so the text can appear in an error message. */
export function redactPkcs11Uri(text: string): string {
  // Also catches a percent-encoded attribute name such as pin%2Dvalue.
  return text.replace(/(pin(?:-|%2d)value)=[^&;#]*/gi, "$1=***");
}

function uriError(message: string): InvalidInputError {
  return new InvalidInputError(message, "ERR_HSM_URI");
}

/** Quote text from the URI (an attribute name) safely: redacted, bounded. */
function quote(text: string): string {
  const redacted = redactPkcs11Uri(text);
  return JSON.stringify(redacted.length > 64 ? `${redacted.slice(0, 64)}…` : redacted);
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Percent-decode to bytes. Unencoded characters contribute their UTF-8 bytes. */
function decodeBytes(value: string, attribute: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < value.length; ) {
    const ch = value[i]!;
    if (ch === "%") {
      const hex = value.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
        throw uriError(`Invalid pkcs11: URI: bad percent-encoding in attribute ${quote(attribute)}`);
      }
      out.push(parseInt(hex, 16));
      i += 3;
    } else {
      const cp = value.codePointAt(i)!;
      const s = String.fromCodePoint(cp);
      for (const b of utf8.encode(s)) out.push(b);
      i += s.length;
    }
  }
  return Uint8Array.from(out);
}

function decodeText(value: string, attribute: string): string {
  const bytes = decodeBytes(value, attribute);
  try {
    return utf8Strict.decode(bytes);
  } catch {
    throw uriError(`Invalid pkcs11: URI: attribute ${quote(attribute)} is not valid UTF-8 after percent-decoding`);
  }
}

/**
 * Parse an RFC 7512 `pkcs11:` URI.
 * @throws InvalidInputError (code ERR_HSM_URI) for a wrong scheme, an unknown attribute (other than
 *   vendor `x-` attributes, which are ignored), a duplicate attribute, an unknown `type`, a
 *   non-numeric `slot-id` or bad percent-encoding. Messages never include the pin-value.
 */
export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (typeof uri !== "string") throw uriError(`Invalid pkcs11: URI: expected a string, got ${typeof uri}`);
  if (!isPkcs11Uri(uri)) {
    // Do not echo the input: a wrong value here may well be a PIN or other secret.
    throw uriError("Invalid pkcs11: URI: it must start with the scheme \"pkcs11:\"");
  }
  let rest = uri.slice("pkcs11:".length);
  if (rest.includes("#")) {
    throw uriError("Invalid pkcs11: URI: a fragment ('#') is not allowed; percent-encode '#' in values as %23");
  }
  const q = rest.indexOf("?");
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? "" : rest.slice(q + 1);
  rest = "";

  const result: Pkcs11Uri = {};
  const seen = new Set<string>();
  // When the URI carries a PIN, quote nothing taken from it (an unencoded '&' or ';' in the PIN
  // would make part of it look like an attribute name); known attribute names are still named.
  const hasPin = /pin(?:-|%2d)value/i.test(uri);
  const say = (text: string): string =>
    !hasPin || PATH_ATTRIBUTES.has(text) || QUERY_ATTRIBUTES.has(text) ? quote(text) : "(withheld: the URI has a pin-value)";

  const split = (segment: string, separator: string): [string, string] => {
    const eq = segment.indexOf("=");
    if (eq < 0) {
      throw uriError(`Invalid pkcs11: URI: attribute ${say(segment)} has no value ('name=value' separated by '${separator}')`);
    }
    const name = segment.slice(0, eq);
    if (seen.has(name)) throw uriError(`Invalid pkcs11: URI: attribute ${say(name)} appears more than once`);
    seen.add(name);
    return [name, segment.slice(eq + 1)];
  };

  for (const segment of path.split(";")) {
    if (segment === "") continue;
    const [name, raw] = split(segment, ";");
    if (QUERY_ATTRIBUTES.has(name)) {
      throw uriError(`Invalid pkcs11: URI: ${say(name)} is a query attribute; put it after '?'`);
    }
    const key = PATH_ATTRIBUTES.get(name);
    if (key === undefined) {
      if (name.toLowerCase().startsWith("x-")) continue;
      throw uriError(`Invalid pkcs11: URI: unknown path attribute ${say(name)}`);
    }
    if (key === null) {
      decodeText(raw, name); // library-version: checked for well-formedness, otherwise ignored
      continue;
    }
    if (key === "id") {
      result.id = decodeBytes(raw, name);
    } else if (key === "slotId") {
      const text = decodeText(raw, name);
      const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(n)) {
        throw uriError(`Invalid pkcs11: URI: slot-id must be a non-negative decimal integer, got ${say(text)}`);
      }
      result.slotId = n;
    } else if (key === "type") {
      const text = decodeText(raw, name);
      if (!OBJECT_TYPES.has(text)) {
        throw uriError(
          `Invalid pkcs11: URI: unknown type ${say(text)} (expected private, public, secret-key, cert or data)`,
        );
      }
      result.type = text as Pkcs11ObjectType;
    } else {
      result[key as StringKey] = decodeText(raw, name);
    }
  }

  for (const segment of query.split("&")) {
    if (segment === "") continue;
    const [name, raw] = split(segment, "&");
    const key = QUERY_ATTRIBUTES.get(name);
    if (key === undefined) {
      if (name.toLowerCase().startsWith("x-")) continue;
      if (PATH_ATTRIBUTES.has(name)) {
        throw uriError(`Invalid pkcs11: URI: ${say(name)} is a path attribute; put it before '?'`);
      }
      throw uriError(`Invalid pkcs11: URI: unknown query attribute ${say(name)}`);
    }
    result[key] = decodeText(raw, name);
  }

  if (result.pinValue !== undefined && result.pinSource !== undefined) {
    throw uriError("Invalid pkcs11: URI: give either pin-value or pin-source, not both");
  }
  return result;
}

// RFC 7512 pk11-pchar / pk11-qchar without the characters a naive parser could misread.
const PATH_SAFE = /[A-Za-z0-9\-._~:@!$'()*+,]/;
const QUERY_SAFE = /[A-Za-z0-9\-._~:@!$'()*,/]/;

function encode(value: string | Uint8Array, safe: RegExp | null): string {
  if (value instanceof Uint8Array) {
    let out = "";
    for (const b of value) out += `%${b.toString(16).padStart(2, "0").toUpperCase()}`;
    return out;
  }
  let out = "";
  for (const ch of value) {
    if (safe && ch.length === 1 && safe.test(ch)) out += ch;
    else out += encode(utf8.encode(ch), null);
  }
  return out;
}

/**
 * Format a URI. `id` bytes are always fully percent-encoded (`%01%02`); reserved characters in text
 * values are percent-encoded. The pin-value is left out unless `options.includePin` is true.
 */
export function formatPkcs11Uri(uri: Pkcs11Uri, options: { includePin?: boolean } = {}): string {
  const path: string[] = [];
  const addPath = (name: string, value: string | undefined) => {
    if (value !== undefined) path.push(`${name}=${encode(value, PATH_SAFE)}`);
  };
  addPath("library-manufacturer", uri.libraryManufacturer);
  addPath("library-description", uri.libraryDescription);
  addPath("slot-manufacturer", uri.slotManufacturer);
  addPath("slot-description", uri.slotDescription);
  if (uri.slotId !== undefined) {
    if (!Number.isSafeInteger(uri.slotId) || uri.slotId < 0) {
      throw uriError(`Cannot format pkcs11: URI: slotId must be a non-negative integer, got ${uri.slotId}`);
    }
    path.push(`slot-id=${uri.slotId}`);
  }
  addPath("manufacturer", uri.manufacturer);
  addPath("model", uri.model);
  addPath("serial", uri.serial);
  addPath("token", uri.token);
  addPath("object", uri.object);
  if (uri.type !== undefined) {
    if (!OBJECT_TYPES.has(uri.type)) throw uriError(`Cannot format pkcs11: URI: unknown type ${quote(String(uri.type))}`);
    path.push(`type=${uri.type}`);
  }
  if (uri.id !== undefined) path.push(`id=${encode(uri.id, null)}`);

  const query: string[] = [];
  const addQuery = (name: string, value: string | undefined) => {
    if (value !== undefined) query.push(`${name}=${encode(value, QUERY_SAFE)}`);
  };
  addQuery("module-name", uri.moduleName);
  addQuery("module-path", uri.modulePath);
  addQuery("pin-source", uri.pinSource);
  if (options.includePin) addQuery("pin-value", uri.pinValue);

  return `pkcs11:${path.join(";")}${query.length ? `?${query.join("&")}` : ""}`;
}
