/**
 * Which X.509 signature algorithm an HSM key signs with, and the CryptoKeyPair @peculiar/x509
 * needs (the private half stays in the token; the public half is an ordinary CryptoKey).
 */
import { InvalidInputError, UnsupportedAlgorithmError } from "../errors.js";
import type { HsmKey } from "../jose/hsm-key.js";
import { shapeOf, type JoseAlgorithm } from "../jose/algorithms.js";

const ECDSA_HASH: Record<string, string> = { "P-256": "SHA-256", "P-384": "SHA-384", "P-521": "SHA-512" };
const SIGNING_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];

export interface Signer {
  /** The key shaped for the signature algorithm. */
  key: HsmKey;
  keys: CryptoKeyPair;
  signingAlgorithm: Algorithm & Record<string, unknown>;
}

/**
 * The signer for `key`: RSA keys sign RS256 unless `alg` names another RS or PS algorithm, EC keys
 * sign ECDSA with the hash of their curve, Ed25519 keys sign EdDSA.
 */
export function signerOf(key: HsmKey, alg?: JoseAlgorithm | string): Signer {
  if (key.kty === "oct") throw new InvalidInputError(`Key '${key.kid}' is a secret key: certificates need a key pair`);
  const chosen = alg ?? defaultSigningAlg(key);
  if (!SIGNING_ALGS.includes(chosen)) throw new UnsupportedAlgorithmError(`${chosen} is not a signature algorithm for certificates`);
  const shaped = key.as(chosen);
  if (!shaped.privateKey) throw new InvalidInputError(`Key '${key.kid}' has no private key on the token: it cannot sign`);
  if (!shaped.publicKey) throw new InvalidInputError(`Key '${key.kid}' has no public key on the token`);
  const shape = shapeOf(chosen);
  let signingAlgorithm: Algorithm & Record<string, unknown>;
  switch (shape.webcrypto.name) {
    case "RSASSA-PKCS1-v1_5":
      signingAlgorithm = { name: "RSASSA-PKCS1-v1_5", hash: shape.webcrypto.hash };
      break;
    case "RSA-PSS": {
      const hash = shape.webcrypto.hash!;
      signingAlgorithm = { name: "RSA-PSS", hash, saltLength: Number(hash.slice(4)) / 8 };
      break;
    }
    case "ECDSA": {
      const curve = (shaped.privateKey.algorithm as EcKeyAlgorithm).namedCurve;
      signingAlgorithm = { name: "ECDSA", hash: ECDSA_HASH[curve] ?? "SHA-256" };
      break;
    }
    default:
      signingAlgorithm = { name: (shaped.privateKey.algorithm as Algorithm).name };
  }
  return { key: shaped, keys: { privateKey: shaped.privateKey, publicKey: shaped.publicKey }, signingAlgorithm };
}

function defaultSigningAlg(key: HsmKey): string {
  if (SIGNING_ALGS.includes(key.alg)) return key.alg;
  if (key.kty === "RSA") return "RS256";
  if (key.kty === "OKP") return "EdDSA";
  const curve = (key.privateKey?.algorithm ?? key.publicKey?.algorithm) as EcKeyAlgorithm | undefined;
  return curve?.namedCurve === "P-384" ? "ES384" : curve?.namedCurve === "P-521" ? "ES512" : "ES256";
}
