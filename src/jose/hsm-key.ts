/**
 * HsmKey: one key on the token, as a JOSE user sees it. It carries a `kid`, the JOSE algorithm it
 * is shaped for, and CryptoKeys for that algorithm: `privateKey` (in the token) and `publicKey`
 * (an ordinary CryptoKey) for key pairs, `secretKey` (in the token) for AES and HMAC keys.
 * `as(alg)` gives the same token object shaped for another algorithm.
 */
import { inspect } from "node:util";
import { createHash, createPublicKey, X509Certificate, type JsonWebKey as NodeJwk } from "node:crypto";
import { calculateJwkThumbprint } from "jose";
import { KeyExportError, UnsupportedAlgorithmError } from "../errors.js";
import type { TokenKey } from "../pkcs11/token-key.js";
import { createHsmCryptoKey } from "../webcrypto/crypto-key.js";
import { nativePublicKey, publicJwkOf } from "../webcrypto/public-key.js";
import { usagesOf } from "../webcrypto/providers/context.js";
import { defaultAlgorithm, fitsKey, JOSE_ALGORITHMS, keyAlgorithm, shapeOf, tokenSupports, type JoseAlgorithm } from "./algorithms.js";

export interface KeyParts {
  privateKey?: TokenKey;
  publicKey?: TokenKey;
  secretKey?: TokenKey;
  /** DER of certificates stored with the key; the one for this public key is published as x5c. */
  certificates?: Uint8Array[];
}

export interface HsmKeyOptions {
  /** Key id; default: the RFC 7638 thumbprint of the public key (label or hex CKA_ID for secret keys). */
  kid?: string;
  /** JOSE algorithm the CryptoKeys are shaped for; default from the key type and flags. */
  alg?: JoseAlgorithm | string;
  /** JWK `use` ("sig" / "enc"); default from the algorithm. */
  use?: "sig" | "enc";
  /** JWK `key_ops` to publish with the public key. */
  keyOps?: string[];
}

export type PublicJwk = JsonWebKey & { kid: string; alg: string; use: string; key_ops?: string[]; x5c?: string[]; "x5t#S256"?: string };

type Kty = "RSA" | "EC" | "OKP" | "oct";

interface Shared {
  parts: KeyParts;
  kid: string;
  keyOps: string[] | undefined;
  publicJwk: JsonWebKey | undefined;
  /** Native public CryptoKeys per algorithm, made once (as() is synchronous). */
  publicKeys: Map<JoseAlgorithm, CryptoKey>;
  algorithms: JoseAlgorithm[];
  /** DER of the key's certificate, when the token holds one. */
  certificate: Uint8Array | undefined;
}

const sharedOf = new WeakMap<HsmKey, Shared>();

/**
 * Record (or forget, with undefined) the certificate of a key after it was stored on (or deleted
 * from) the token, so that exportPublic() of this key and of its as() views publishes it.
 */
export function attachCertificate(key: HsmKey, der: Uint8Array | undefined): void {
  const shared = sharedOf.get(key);
  if (shared) shared.certificate = der;
}

export class HsmKey {
  readonly kid: string;
  readonly alg: JoseAlgorithm;
  readonly use: "sig" | "enc";
  readonly kty: Kty;
  readonly label: string | undefined;
  readonly id: Uint8Array | undefined;
  /** JOSE algorithms this key can do on this token. */
  readonly algorithms: readonly JoseAlgorithm[];
  readonly privateKey: CryptoKey | undefined;
  readonly publicKey: CryptoKey | undefined;
  readonly secretKey: CryptoKey | undefined;
  readonly #shared: Shared;

  private constructor(shared: Shared, alg: JoseAlgorithm, use: "sig" | "enc" | undefined) {
    const shape = shapeOf(alg);
    const main = mainPart(shared.parts);
    if (!fitsKey(shape, main.info)) {
      throw new UnsupportedAlgorithmError(`${alg} does not fit ${main.describe()} (${describeInfo(main)})`);
    }
    // Fail here, not later inside jose (which hides key-unwrap failures behind a random CEK).
    if (main.info.class !== "public" && !shared.algorithms.includes(alg)) {
      throw new UnsupportedAlgorithmError(
        `${main.describe()} cannot do ${alg}: the token lacks the mechanism or parameters, or the key's flags forbid it` +
          ` (it can do: ${shared.algorithms.join(", ") || "nothing"})`,
      );
    }
    this.#shared = shared;
    sharedOf.set(this, shared);
    this.kid = shared.kid;
    this.alg = alg;
    this.use = use ?? shape.use;
    this.kty = main.info.kind === "AES" || main.info.kind === "HMAC" ? "oct" : main.info.kind;
    this.label = main.info.label;
    this.id = main.info.id;
    this.algorithms = shared.algorithms;
    const algorithm = keyAlgorithm(shape, main.info);
    const { privateKey, secretKey } = shared.parts;
    this.privateKey = privateKey && createHsmCryptoKey(privateKey, { type: "private", algorithm, usages: usagesOf(privateKey, shape.privateUsages) });
    this.secretKey = secretKey && createHsmCryptoKey(secretKey, { type: "secret", algorithm, usages: usagesOf(secretKey, shape.privateUsages) });
    this.publicKey = shared.publicKeys.get(alg);
  }

  /** Build an HsmKey from token objects (a key pair, a lone public key, or a secret key). */
  static async create(parts: KeyParts, options: HsmKeyOptions = {}): Promise<HsmKey> {
    const main = mainPart(parts);
    const publicInfo = parts.publicKey?.info ?? (main.info.kind === "RSA" ? main.info : undefined);
    const publicJwk = publicInfo ? publicJwkOf(publicInfo) : undefined;
    const kid = options.kid ?? (publicJwk ? await calculateJwkThumbprint(publicJwk as Parameters<typeof calculateJwkThumbprint>[0]) : secretKid(main));
    const fitting = JOSE_ALGORITHMS.filter((a) => fitsKey(shapeOf(a), main.info));
    const publicKeys = new Map<JoseAlgorithm, CryptoKey>();
    if (publicJwk && publicInfo) {
      // One native public CryptoKey per algorithm the key fits (as() is synchronous), imported at once.
      const shaped = fitting.filter((a) => !(a === "EdDSA" && main.info.curve === "Ed448"));
      const imported = await Promise.all(shaped.map((a) => nativePublicKey(publicJwk, keyAlgorithm(shapeOf(a), publicInfo), shapeOf(a).publicUsages)));
      shaped.forEach((a, i) => publicKeys.set(a, imported[i]!));
    }
    const algorithms = fitting.filter((a) => tokenSupports(shapeOf(a), main.info, main.token));
    const certificate = publicJwk ? certificateFor(publicJwk, parts.certificates ?? []) : undefined;
    const shared: Shared = { parts, kid, keyOps: options.keyOps, publicJwk, publicKeys, algorithms, certificate };
    const preferred = defaultAlgorithm(main.info);
    const alg = (options.alg ?? (algorithms.includes(preferred) || !algorithms.length ? preferred : algorithms[0]!)) as JoseAlgorithm;
    shapeOf(alg);
    return new HsmKey(shared, alg, options.use);
  }

  /** The same token object, with CryptoKeys shaped for `alg`. */
  as(alg: JoseAlgorithm | string): HsmKey {
    if (alg === this.alg) return this;
    return new HsmKey(this.#shared, alg as JoseAlgorithm, undefined);
  }

  /** DER of the key's certificate stored on the token, if any. */
  get certificate(): Uint8Array | undefined {
    return this.#shared.certificate;
  }

  /** The token objects behind this key. */
  get objects(): Readonly<KeyParts> {
    return this.#shared.parts;
  }

  /** Public JWK with kid, use, alg (and key_ops when given). Secret keys have none. */
  exportPublic(): PublicJwk {
    const jwk = this.#shared.publicJwk;
    if (!jwk) throw new KeyExportError(`Key '${this.kid}' is a secret key: it has no public part to export`);
    const out: PublicJwk = { ...jwk, kid: this.kid, use: this.use, alg: this.alg };
    if (this.#shared.keyOps) out.key_ops = [...this.#shared.keyOps];
    const cert = this.#shared.certificate;
    if (cert) {
      out.x5c = [Buffer.from(cert).toString("base64")];
      out["x5t#S256"] = createHash("sha256").update(cert).digest("base64url");
    }
    return out;
  }

  /** Always refused: private and secret key material never leaves the token. */
  exportPrivate(): never {
    throw new KeyExportError(`Key '${this.kid}' lives in the token and cannot be exported`);
  }

  toJSON(): object {
    return this.#shared.publicJwk ? this.exportPublic() : { kid: this.kid, kty: this.kty, alg: this.alg, use: this.use };
  }

  [inspect.custom](): string {
    const where = mainPart(this.#shared.parts).describe();
    return `HsmKey { kid: '${this.kid}', kty: '${this.kty}', alg: '${this.alg}', ${where} }`;
  }
}

/** The certificate among `ders` whose public key is `jwk` (RFC 7517: x5c must match the key). */
function certificateFor(jwk: JsonWebKey, ders: Uint8Array[]): Uint8Array | undefined {
  if (ders.length === 0) return undefined;
  const spki = createPublicKey({ key: jwk as NodeJwk, format: "jwk" }).export({ type: "spki", format: "der" });
  return ders.find((der) => {
    try {
      return new X509Certificate(der).publicKey.export({ type: "spki", format: "der" }).equals(spki);
    } catch {
      return false;
    }
  });
}

function mainPart(parts: KeyParts): TokenKey {
  const main = parts.privateKey ?? parts.secretKey ?? parts.publicKey;
  if (!main) throw new TypeError("HsmKey needs at least one token object");
  return main;
}

function secretKid(key: TokenKey): string {
  if (key.info.label) return key.info.label;
  if (key.info.id) return Buffer.from(key.info.id).toString("hex");
  throw new UnsupportedAlgorithmError(`${key.describe()} has neither label nor id: give a kid`);
}

function describeInfo(key: TokenKey): string {
  const i = key.info;
  if (i.kind === "RSA") return `RSA-${i.modulusBits}`;
  if (i.curve) return `${i.kind} ${i.curve}`;
  return `${i.kind} ${(i.length ?? 0) * 8} bits`;
}
