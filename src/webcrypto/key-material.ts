/**
 * Parsing private and secret key material offered for import (JWK, PKCS#8 DER or PEM) into the
 * shape the token layer creates objects from. Node's KeyObject does the ASN.1 parsing.
 */
import { createPrivateKey, type JsonWebKey as NodeJwk } from "node:crypto";
import { InvalidInputError } from "../errors.js";
import type { KeyMaterial } from "../pkcs11/keygen.js";
import { CURVES, type NamedCurve } from "../pkcs11/curves.js";

const EC_CURVES: Record<string, NamedCurve> = { "P-256": "P-256", "P-384": "P-384", "P-521": "P-521", secp256k1: "secp256k1" };
const OKP_CURVES: Record<string, NamedCurve> = { Ed25519: "Ed25519", Ed448: "Ed448" };

function field(jwk: JsonWebKey, name: keyof JsonWebKey): Uint8Array {
  const value = jwk[name];
  if (typeof value !== "string" || value.length === 0) throw new InvalidInputError(`JWK is missing its '${String(name)}' member`);
  if (!/^[A-Za-z0-9_-]+$/.test(value)) throw new InvalidInputError(`JWK member '${String(name)}' is not base64url`);
  return new Uint8Array(Buffer.from(value, "base64url"));
}

/** A member whose length the curve fixes (RFC 7518 6.2.1, RFC 8037 2). */
function sized(jwk: JsonWebKey, name: keyof JsonWebKey, size: number): Uint8Array {
  const value = field(jwk, name);
  if (value.length !== size) throw new InvalidInputError(`JWK member '${String(name)}' has ${value.length} bytes, the curve needs ${size}`);
  return value;
}

/** Key material from a private (or secret `oct`) JWK. */
export function materialFromJwk(jwk: JsonWebKey, secretKind: "AES" | "HMAC" = "HMAC"): KeyMaterial {
  if (typeof jwk !== "object" || jwk === null) throw new InvalidInputError("JWK must be an object");
  switch (jwk.kty) {
    case "RSA":
      return {
        kind: "RSA", n: field(jwk, "n"), e: field(jwk, "e"), d: field(jwk, "d"), p: field(jwk, "p"), q: field(jwk, "q"),
        dp: field(jwk, "dp"), dq: field(jwk, "dq"), qi: field(jwk, "qi"),
      };
    case "EC": {
      const curve = EC_CURVES[jwk.crv ?? ""];
      if (!curve) throw new InvalidInputError(`JWK curve '${jwk.crv}' is not supported`);
      const size = CURVES[curve].size;
      const x = sized(jwk, "x", size);
      const y = sized(jwk, "y", size);
      return { kind: "EC", curve, d: sized(jwk, "d", size), point: new Uint8Array(Buffer.concat([Buffer.from([4]), x, y])) };
    }
    case "OKP": {
      const curve = OKP_CURVES[jwk.crv ?? ""];
      if (!curve) throw new InvalidInputError(`JWK curve '${jwk.crv}' is not supported (Ed25519, Ed448)`);
      const size = CURVES[curve].size;
      return { kind: "OKP", curve, d: sized(jwk, "d", size), point: sized(jwk, "x", size) };
    }
    case "oct":
      return { kind: secretKind, value: field(jwk, "k") };
    default:
      throw new InvalidInputError(`JWK kty '${String(jwk.kty)}' is not supported`);
  }
}

/** Key material from PKCS#8 (DER bytes or a PEM string). */
export function materialFromPkcs8(data: string | Uint8Array): KeyMaterial {
  let jwk: NodeJwk;
  try {
    const key =
      typeof data === "string"
        ? createPrivateKey({ key: data, format: "pem" })
        : createPrivateKey({ key: Buffer.from(data), format: "der", type: "pkcs8" });
    jwk = key.export({ format: "jwk" });
  } catch (error) {
    throw new InvalidInputError(`Not a readable PKCS#8 private key: ${(error as Error).message}`, "ERR_HSM_INVALID_INPUT", { cause: error });
  }
  return materialFromJwk(jwk as JsonWebKey);
}
