/**
 * HsmKeySet: the keys a service publishes and uses, by `kid`. It serves `/.well-known/jwks.json`
 * (`toJWKS()`) and hands jose the right key for a token's header (`resolver`), which makes key
 * rotation a matter of adding the new key and, later, deleting the old one.
 */
import { InvalidInputError, KeyNotFoundError, UnsupportedAlgorithmError } from "../errors.js";
import type { KeyRef } from "../pkcs11/find-key.js";
import type { Hsm } from "../hsm.js";
import { shapeOf } from "./algorithms.js";
import { HsmKey, type HsmKeyOptions, type PublicJwk } from "./hsm-key.js";

/** The part of a JOSE header the resolver reads. */
export interface ResolverHeader {
  alg?: string;
  enc?: string;
  kid?: string;
}

export class HsmKeySet implements Iterable<HsmKey> {
  readonly #hsm: Hsm | undefined;
  readonly #keys = new Map<string, HsmKey>();

  constructor(hsm?: Hsm) {
    this.#hsm = hsm;
  }

  /** Add a key found on the set's token by reference, or an HsmKey already at hand. Duplicate kids are refused. */
  async add(ref: KeyRef | HsmKey, options: HsmKeyOptions = {}): Promise<HsmKey> {
    let key: HsmKey;
    if (ref instanceof HsmKey) {
      if (options.kid !== undefined && options.kid !== ref.kid) throw new InvalidInputError("Give the kid when the HsmKey is made (hsm.getKey(ref, { kid }))");
      key = options.alg ? ref.as(options.alg) : ref;
    } else {
      if (!this.#hsm) throw new InvalidInputError("This HsmKeySet has no Hsm: pass HsmKeys, or create it with new HsmKeySet(hsm)");
      if (options.kid !== undefined && this.#keys.has(options.kid)) throw duplicate(options.kid);
      key = await this.#hsm.getKey(ref, options);
    }
    if (this.#keys.has(key.kid)) throw duplicate(key.kid);
    this.#keys.set(key.kid, key);
    return key;
  }

  get(kid: string): HsmKey | undefined {
    return this.#keys.get(kid);
  }

  has(kid: string): boolean {
    return this.#keys.has(kid);
  }

  /** Remove a key from the set (the token object stays). */
  delete(kid: string): boolean {
    return this.#keys.delete(kid);
  }

  get size(): number {
    return this.#keys.size;
  }

  [Symbol.iterator](): Iterator<HsmKey> {
    return this.#keys.values();
  }

  /** The public JWKS: every key pair's public JWK (secret keys are never published). */
  toJWKS(): { keys: PublicJwk[] } {
    return { keys: [...this.#keys.values()].filter((k) => k.kty !== "oct").map((k) => k.exportPublic()) };
  }

  /**
   * A key-resolving function for jose's verify and decrypt functions (jwtVerify, compactVerify,
   * flattenedVerify, generalVerify, jwtDecrypt, compactDecrypt, flattenedDecrypt, generalDecrypt). It picks the key by the
   * header's `kid` (or the only key that can do its `alg`) and returns the CryptoKey jose needs: the
   * public key to verify, the private or secret key (in the token) to decrypt.
   */
  readonly resolver = async (header: ResolverHeader): Promise<CryptoKey> => {
    const alg = header.alg;
    if (!alg) throw new InvalidInputError("JOSE header has no 'alg'");
    const decrypting = header.enc !== undefined;
    const key = this.#pick(header.kid, alg).as(alg);
    const cryptoKey = decrypting || key.kty === "oct" ? (key.secretKey ?? key.privateKey) : key.publicKey;
    if (!cryptoKey) throw new UnsupportedAlgorithmError(`Key '${key.kid}' has no ${decrypting ? "private" : "public"} part for ${alg}`);
    return cryptoKey;
  };

  #pick(kid: string | undefined, alg: string): HsmKey {
    if (kid !== undefined) {
      const key = this.#keys.get(kid);
      if (!key) throw new KeyNotFoundError(`No key with kid '${kid}' in the key set`);
      return key;
    }
    shapeOf(alg);
    const candidates = [...this.#keys.values()].filter((k) => k.algorithms.includes(alg as never) || k.alg === alg);
    if (candidates.length === 1) return candidates[0]!;
    throw new KeyNotFoundError(
      candidates.length ? `${candidates.length} keys in the set can do ${alg} and the header has no kid` : `No key in the set can do ${alg}`,
    );
  }
}

function duplicate(kid: string): InvalidInputError {
  return new InvalidInputError(`The key set already has a key with kid '${kid}'`, "ERR_HSM_DUPLICATE_KID");
}
