/** What key to create on the token for a JOSE algorithm, and what it may be used for. */
import { InvalidInputError } from "../errors.js";
import type { NamedCurve } from "../pkcs11/curves.js";
import type { KeyCapabilities, KeySpec } from "../pkcs11/keygen.js";
import { shapeOf, type JoseAlgorithm } from "./algorithms.js";

export interface SpecOptions {
  /** RSA modulus length in bits (default 2048; 3072 and 4096 are common). */
  modulusLength?: number;
  /** Curve for EdDSA (Ed25519 or Ed448) and ECDH-ES (P-256, P-384, P-521). */
  curve?: NamedCurve;
  /** Restrict the key to signing ("sig") or encryption ("enc"); default: all its kind supports. */
  use?: "sig" | "enc";
}

const HMAC_BYTES = { HS256: 32, HS384: 48, HS512: 64 } as Record<string, number>;

export function specFor(alg: JoseAlgorithm, options: SpecOptions = {}): KeySpec {
  const shape = shapeOf(alg);
  switch (shape.kind) {
    case "RSA": {
      const bits = options.modulusLength ?? 2048;
      if (bits < 2048 || bits % 8) throw new InvalidInputError(`RSA modulusLength must be a multiple of 8 and at least 2048, got ${bits}`);
      return { kind: "RSA", modulusBits: bits };
    }
    case "EC": {
      const curve = shape.curve ?? options.curve ?? "P-256";
      if (!["P-256", "P-384", "P-521"].includes(curve)) throw new InvalidInputError(`${alg} keys are on P-256, P-384 or P-521, not ${curve}`);
      return { kind: "EC", curve };
    }
    case "OKP": {
      const curve = shape.curve ?? options.curve ?? "Ed25519";
      if (curve !== "Ed25519" && curve !== "Ed448") throw new InvalidInputError(`${alg} keys are on Ed25519 or Ed448, not ${curve}`);
      return { kind: "OKP", curve };
    }
    case "HMAC":
      return { kind: "HMAC", length: HMAC_BYTES[alg] ?? 32 };
    case "AES":
      return { kind: "AES", length: (shape.aesBits ?? 256) / 8 };
  }
}

export function capabilitiesFor(kind: KeySpec["kind"], use: "sig" | "enc" | undefined): KeyCapabilities {
  const sig = use !== "enc";
  const enc = use !== "sig";
  switch (kind) {
    case "RSA":
      return { sign: sig, decrypt: enc, unwrap: enc };
    case "EC":
      return { sign: sig, derive: enc };
    case "OKP":
      return { sign: true };
    case "HMAC":
      return { sign: true, verify: true };
    case "AES":
      return { encrypt: true, decrypt: true, wrap: true, unwrap: true };
  }
}
