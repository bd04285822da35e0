/**
 * JOSE algorithms (RFC 7518, RFC 8037) and the WebCrypto shape a token key takes for each: which
 * key kind it needs, how its CryptoKeys' `algorithm` and `usages` look, and which token
 * mechanisms make it possible.
 */
import { UnsupportedAlgorithmError } from "../errors.js";
import { CKM, type HashName } from "../pkcs11/constants.js";
import { acceptsOaepHash } from "../pkcs11/oaep-hashes.js";
import type { NamedCurve } from "../pkcs11/curves.js";
import type { KeyInfo, KeyKind } from "../pkcs11/token-key.js";
import type { Token } from "../pkcs11/token.js";

export type JoseAlgorithm =
  | "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"
  | "ES256" | "ES384" | "ES512" | "EdDSA" | "Ed25519"
  | "HS256" | "HS384" | "HS512"
  | "RSA-OAEP" | "RSA-OAEP-256" | "RSA-OAEP-384" | "RSA-OAEP-512"
  | "ECDH-ES" | "ECDH-ES+A128KW" | "ECDH-ES+A192KW" | "ECDH-ES+A256KW"
  | "A128KW" | "A192KW" | "A256KW" | "A128GCMKW" | "A192GCMKW" | "A256GCMKW"
  | "dir" | "A128GCM" | "A192GCM" | "A256GCM";

type Hash = HashName;

export interface AlgorithmShape {
  alg: JoseAlgorithm;
  use: "sig" | "enc";
  kind: KeyKind;
  /** EC/OKP curve the key must be on (absent: any curve the algorithm allows). */
  curve?: NamedCurve;
  /** AES key length in bits the algorithm requires. */
  aesBits?: number;
  /** WebCrypto algorithm of the private/secret CryptoKey (before key-specific fields). */
  webcrypto: { name: string; hash?: Hash };
  privateUsages: KeyUsage[];
  publicUsages: KeyUsage[];
  /** The token must offer one of these mechanisms. */
  mechanisms: number[];
}

const sig = (alg: JoseAlgorithm, kind: KeyKind, name: string, hash: Hash | undefined, mechanisms: number[], curve?: NamedCurve): AlgorithmShape => ({
  alg, use: "sig", kind, webcrypto: hash ? { name, hash } : { name }, privateUsages: kind === "HMAC" ? ["sign", "verify"] : ["sign"], publicUsages: ["verify"], mechanisms, ...(curve ? { curve } : {}),
});

const SHAPES = {
  RS256: sig("RS256", "RSA", "RSASSA-PKCS1-v1_5", "SHA-256", [CKM.SHA256_RSA_PKCS, CKM.RSA_PKCS]),
  RS384: sig("RS384", "RSA", "RSASSA-PKCS1-v1_5", "SHA-384", [CKM.SHA384_RSA_PKCS, CKM.RSA_PKCS]),
  RS512: sig("RS512", "RSA", "RSASSA-PKCS1-v1_5", "SHA-512", [CKM.SHA512_RSA_PKCS, CKM.RSA_PKCS]),
  PS256: sig("PS256", "RSA", "RSA-PSS", "SHA-256", [CKM.SHA256_RSA_PKCS_PSS, CKM.RSA_PKCS_PSS]),
  PS384: sig("PS384", "RSA", "RSA-PSS", "SHA-384", [CKM.SHA384_RSA_PKCS_PSS, CKM.RSA_PKCS_PSS]),
  PS512: sig("PS512", "RSA", "RSA-PSS", "SHA-512", [CKM.SHA512_RSA_PKCS_PSS, CKM.RSA_PKCS_PSS]),
  ES256: sig("ES256", "EC", "ECDSA", undefined, [CKM.ECDSA, CKM.ECDSA_SHA256], "P-256"),
  ES384: sig("ES384", "EC", "ECDSA", undefined, [CKM.ECDSA, CKM.ECDSA_SHA384], "P-384"),
  ES512: sig("ES512", "EC", "ECDSA", undefined, [CKM.ECDSA, CKM.ECDSA_SHA512], "P-521"),
  EdDSA: sig("EdDSA", "OKP", "Ed25519", undefined, [CKM.EDDSA]),
  Ed25519: sig("Ed25519", "OKP", "Ed25519", undefined, [CKM.EDDSA], "Ed25519"),
  HS256: sig("HS256", "HMAC", "HMAC", "SHA-256", [CKM.SHA256_HMAC]),
  HS384: sig("HS384", "HMAC", "HMAC", "SHA-384", [CKM.SHA384_HMAC]),
  HS512: sig("HS512", "HMAC", "HMAC", "SHA-512", [CKM.SHA512_HMAC]),
  ...oaep("RSA-OAEP", "SHA-1"),
  ...oaep("RSA-OAEP-256", "SHA-256"),
  ...oaep("RSA-OAEP-384", "SHA-384"),
  ...oaep("RSA-OAEP-512", "SHA-512"),
  ...ecdh("ECDH-ES"),
  ...ecdh("ECDH-ES+A128KW"),
  ...ecdh("ECDH-ES+A192KW"),
  ...ecdh("ECDH-ES+A256KW"),
  ...aes("A128KW", "AES-KW", 128, ["wrapKey", "unwrapKey"], CKM.AES_KEY_WRAP),
  ...aes("A192KW", "AES-KW", 192, ["wrapKey", "unwrapKey"], CKM.AES_KEY_WRAP),
  ...aes("A256KW", "AES-KW", 256, ["wrapKey", "unwrapKey"], CKM.AES_KEY_WRAP),
  ...aes("A128GCMKW", "AES-GCM", 128, ["encrypt", "decrypt"], CKM.AES_GCM),
  ...aes("A192GCMKW", "AES-GCM", 192, ["encrypt", "decrypt"], CKM.AES_GCM),
  ...aes("A256GCMKW", "AES-GCM", 256, ["encrypt", "decrypt"], CKM.AES_GCM),
  ...aes("A128GCM", "AES-GCM", 128, ["encrypt", "decrypt"], CKM.AES_GCM),
  ...aes("A192GCM", "AES-GCM", 192, ["encrypt", "decrypt"], CKM.AES_GCM),
  ...aes("A256GCM", "AES-GCM", 256, ["encrypt", "decrypt"], CKM.AES_GCM),
  dir: { alg: "dir", use: "enc", kind: "AES", webcrypto: { name: "AES-GCM" }, privateUsages: ["encrypt", "decrypt"], publicUsages: [], mechanisms: [CKM.AES_GCM] } as AlgorithmShape,
} as Record<JoseAlgorithm, AlgorithmShape>;

function oaep(alg: JoseAlgorithm, hash: Hash): Partial<Record<JoseAlgorithm, AlgorithmShape>> {
  return { [alg]: { alg, use: "enc", kind: "RSA", webcrypto: { name: "RSA-OAEP", hash }, privateUsages: ["decrypt", "unwrapKey"], publicUsages: ["encrypt", "wrapKey"], mechanisms: [CKM.RSA_PKCS_OAEP] } };
}

function ecdh(alg: JoseAlgorithm): Partial<Record<JoseAlgorithm, AlgorithmShape>> {
  return { [alg]: { alg, use: "enc", kind: "EC", webcrypto: { name: "ECDH" }, privateUsages: ["deriveBits", "deriveKey"], publicUsages: [], mechanisms: [CKM.ECDH1_DERIVE] } };
}

function aes(alg: JoseAlgorithm, name: string, bits: number, usages: KeyUsage[], mechanism: number): Partial<Record<JoseAlgorithm, AlgorithmShape>> {
  return { [alg]: { alg, use: "enc", kind: "AES", aesBits: bits, webcrypto: { name }, privateUsages: usages, publicUsages: [], mechanisms: [mechanism] } };
}

export const JOSE_ALGORITHMS = Object.keys(SHAPES) as JoseAlgorithm[];

export function shapeOf(alg: string): AlgorithmShape {
  const shape = SHAPES[alg as JoseAlgorithm];
  if (!shape) throw new UnsupportedAlgorithmError(`Unknown JOSE algorithm '${alg}'`);
  return shape;
}

/** Whether a key can serve `alg` at all (kind, curve, length), regardless of the token. */
export function fitsKey(shape: AlgorithmShape, info: KeyInfo): boolean {
  if (shape.kind !== info.kind) return false;
  if (shape.curve && shape.curve !== info.curve) return false;
  if (shape.kind === "EC" && shape.webcrypto.name === "ECDH" && !["P-256", "P-384", "P-521"].includes(info.curve ?? "")) return false;
  if (shape.alg === "EdDSA" && info.curve !== "Ed25519" && info.curve !== "Ed448") return false;
  if (shape.aesBits && info.length !== undefined && shape.aesBits !== info.length * 8) return false;
  if (shape.kind === "RSA" && (info.modulusBits ?? 0) < 2048) return false;
  if (shape.kind === "HMAC" && shape.webcrypto.hash && info.length !== undefined && info.length * 8 < hashBits(shape.webcrypto.hash)) return false;
  return true;
}

/** Whether the token offers a mechanism for `alg` and the object's flags allow its private-side use. */
export function tokenSupports(shape: AlgorithmShape, info: KeyInfo, token: Token): boolean {
  if (!shape.mechanisms.some((m) => token.has(m))) return false;
  if (shape.alg === "EdDSA" || shape.alg === "Ed25519") return info.flags.sign || info.class === "public";
  // SoftHSM 2.6 lists CKM_RSA_PKCS_OAEP but refuses every hash but SHA-1: ask the token.
  if (shape.webcrypto.name === "RSA-OAEP" && !acceptsOaepHash(token, shape.webcrypto.hash!)) return false;
  if (info.class === "public") return shape.use === "sig" ? info.flags.verify : info.flags.encrypt || info.flags.wrap;
  const flags = info.flags;
  switch (shape.webcrypto.name) {
    case "RSASSA-PKCS1-v1_5":
    case "RSA-PSS":
    case "ECDSA":
    case "HMAC":
      return flags.sign;
    case "RSA-OAEP":
      return flags.decrypt || flags.unwrap;
    case "ECDH":
      return flags.derive;
    case "AES-KW":
      return flags.wrap || flags.unwrap;
    default:
      return flags.encrypt || flags.decrypt;
  }
}

function hashBits(hash: Hash): number {
  return hash === "SHA-1" ? 160 : Number(hash.slice(4));
}

/** The WebCrypto `algorithm` of a CryptoKey shaped for `shape` from this key's attributes. */
export function keyAlgorithm(shape: AlgorithmShape, info: KeyInfo): KeyAlgorithm & Record<string, unknown> {
  const { name, hash } = shape.webcrypto;
  switch (name) {
    case "RSASSA-PKCS1-v1_5":
    case "RSA-PSS":
    case "RSA-OAEP":
      return { name, modulusLength: info.modulusBits!, publicExponent: new Uint8Array(info.publicExponent!), hash: { name: hash! } };
    case "ECDSA":
    case "ECDH":
      return { name, namedCurve: info.curve! };
    case "Ed25519":
      return { name: info.curve === "Ed448" ? "Ed448" : "Ed25519" };
    case "HMAC":
      return { name, hash: { name: hash! }, length: (info.length ?? 0) * 8 };
    default:
      return { name, length: (info.length ?? 0) * 8 };
  }
}

/** The algorithm a key is used for when the caller names none. */
export function defaultAlgorithm(info: KeyInfo): JoseAlgorithm {
  switch (info.kind) {
    case "RSA":
      return info.flags.sign || info.class === "public" ? "RS256" : "RSA-OAEP";
    case "EC":
      if (!info.flags.sign && info.flags.derive) return "ECDH-ES";
      return info.curve === "P-384" ? "ES384" : info.curve === "P-521" ? "ES512" : "ES256";
    case "OKP":
      return "EdDSA";
    case "HMAC":
      return info.hmacHash === "SHA-384" ? "HS384" : info.hmacHash === "SHA-512" ? "HS512" : "HS256";
    case "AES": {
      const bits = (info.length ?? 32) * 8;
      return (info.flags.wrap || info.flags.unwrap ? `A${bits}KW` : `A${bits}GCM`) as JoseAlgorithm;
    }
  }
}
