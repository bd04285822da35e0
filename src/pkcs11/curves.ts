/**
 * Named curves as PKCS#11 stores them: CKA_EC_PARAMS is a DER OID (or, for Edwards curves on some
 * tokens, a PrintableString name); CKA_EC_POINT is the point, usually wrapped in a DER OCTET STRING.
 */

export type NamedCurve = "P-256" | "P-384" | "P-521" | "secp256k1" | "Ed25519" | "Ed448";

interface CurveInfo {
  /** DER encoding of the curve OID. */
  oid: string;
  /** Printable-string alias some tokens use for Edwards curves. */
  alias?: string;
  /** Size of one coordinate (or of the Edwards public key), in bytes. */
  size: number;
  edwards: boolean;
}

export const CURVES: Record<NamedCurve, CurveInfo> = {
  "P-256": { oid: "06082a8648ce3d030107", size: 32, edwards: false },
  "P-384": { oid: "06052b81040022", size: 48, edwards: false },
  "P-521": { oid: "06052b81040023", size: 66, edwards: false },
  secp256k1: { oid: "06052b8104000a", size: 32, edwards: false },
  Ed25519: { oid: "06032b6570", alias: "edwards25519", size: 32, edwards: true },
  Ed448: { oid: "06032b6571", alias: "edwards448", size: 57, edwards: true },
};

export function curveParams(curve: NamedCurve): Buffer {
  return Buffer.from(CURVES[curve].oid, "hex");
}

export function curveFromParams(params: Buffer): NamedCurve | undefined {
  const hex = params.toString("hex");
  for (const [name, info] of Object.entries(CURVES) as [NamedCurve, CurveInfo][]) {
    if (info.oid === hex) return name;
    // PrintableString (0x13) holding the alias
    if (info.alias && params[0] === 0x13 && params.subarray(2).toString("latin1") === info.alias) return name;
  }
  return undefined;
}

/** Length in bytes of the raw public point: 04||x||y for Weierstrass curves, the key itself for Edwards. */
export function rawPointLength(curve: NamedCurve): number {
  const info = CURVES[curve];
  return info.edwards ? info.size : 1 + 2 * info.size;
}

/** Raw point from CKA_EC_POINT, which is DER-wrapped on most tokens and raw on a few. */
export function unwrapPoint(curve: NamedCurve, value: Buffer): Buffer {
  const raw = rawPointLength(curve);
  if (value.length === raw) return value;
  if (value[0] !== 0x04) throw new Error(`CKA_EC_POINT for ${curve} is neither raw nor a DER OCTET STRING`);
  let offset = 2;
  let length = value[1]!;
  if (length & 0x80) {
    const n = length & 0x7f;
    length = 0;
    for (let i = 0; i < n; i++) length = (length << 8) | value[2 + i]!;
    offset = 2 + n;
  }
  const inner = value.subarray(offset, offset + length);
  if (inner.length !== raw) throw new Error(`CKA_EC_POINT for ${curve} has ${inner.length} bytes, expected ${raw}`);
  return inner;
}

/** DER OCTET STRING around a raw point, the form CKA_EC_POINT takes when importing. */
export function wrapPoint(point: Uint8Array): Buffer {
  const len = point.length;
  const header = len < 0x80 ? Buffer.from([0x04, len]) : Buffer.from([0x04, 0x81, len]);
  return Buffer.concat([header, point]);
}
