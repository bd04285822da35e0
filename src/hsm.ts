/**
 * Hsm: an open token, and what a JOSE user does with it. Open with `openHsm()`; close with
 * `close()`, `await using`, or let `withHsm()` do both.
 */
import { inspect } from "node:util";
import { randomBytes } from "node:crypto";
import { InvalidInputError, KeyNotFoundError } from "./errors.js";
import { materialFromJwk, materialFromPkcs8 } from "./webcrypto/key-material.js";
import { HsmCrypto } from "./webcrypto/crypto.js";
import { destroyObjects, generateKeyPair, generateSecretKey, importKeyMaterial, type KeyMaterial } from "./pkcs11/keygen.js";
import { countObjects, describeReference, findKey, listKeyObjects, resolveReference, type KeyRef, type KeyReference } from "./pkcs11/find-key.js";
import { Token } from "./pkcs11/token.js";
import type { PoolStats } from "./pkcs11/pool.js";
import type { ThreadStats } from "./pkcs11/token-thread.js";
import type { TokenKey } from "./pkcs11/token-key.js";
import { resolveOptions, type HsmOptions } from "./options.js";
import { HsmKey, type HsmKeyOptions, type KeyParts } from "./jose/hsm-key.js";
import { deleteCertificateObjects, findCertificateValues } from "./pkcs11/certificates.js";
import { shapeOf, type JoseAlgorithm } from "./jose/algorithms.js";
import { capabilitiesFor, specFor, type SpecOptions } from "./jose/key-spec.js";

export interface TokenInfo {
  module: string;
  label: string;
  serial: string;
  manufacturer: string;
  model: string;
  slotId: number;
  /** True for the embedded SoftHSM2 development token. */
  embedded: boolean;
}

export interface GenerateKeyOptions extends SpecOptions, Omit<HsmKeyOptions, "alg" | "use"> {
  label?: string;
  /** CKA_ID (bytes or hex); default 16 random bytes. */
  id?: Uint8Array | string;
}

export interface ImportKeyOptions extends Omit<HsmKeyOptions, "alg"> {
  label?: string;
  id?: Uint8Array | string;
  /** JOSE algorithm; needed for `oct` keys without `alg` (HS* vs A*). */
  alg?: JoseAlgorithm | string;
  use?: "sig" | "enc";
}

export class Hsm implements AsyncDisposable {
  readonly crypto: HsmCrypto;
  readonly info: TokenInfo;
  readonly #token: Token;

  private constructor(token: Token, embedded: boolean) {
    this.#token = token;
    this.crypto = new HsmCrypto(token);
    this.info = Object.freeze({
      module: token.module.path,
      label: token.label,
      serial: token.serial,
      manufacturer: token.manufacturer,
      model: token.model,
      slotId: token.slotId,
      embedded,
    });
  }

  /** Open a token. See `openHsm`. */
  static async open(options: HsmOptions | string = {}): Promise<Hsm> {
    const resolved = resolveOptions(options);
    const token = Token.open({
      module: resolved.module,
      selector: resolved.selector,
      ...(resolved.libraryParameters !== undefined ? { libraryParameters: resolved.libraryParameters } : {}),
      ...(resolved.pin !== undefined ? { pin: resolved.pin } : {}),
      pool: resolved.pool,
      threadModule: resolved.threadModule,
      threadNice: resolved.threadNice,
    });
    return new Hsm(token, resolved.embedded !== undefined);
  }

  get closed(): boolean {
    return this.#token.closed;
  }

  /**
   * The key `ref` names (label, id, or pkcs11: URI), as CryptoKeys shaped for `options.alg`.
   * The key options may also ride in the reference: `getKey({ label: "k", kid: "jwt-key" })`.
   */
  async getKey(ref: KeyRef | (KeyReference & HsmKeyOptions), options: HsmKeyOptions = {}): Promise<HsmKey> {
    this.#token.assertOpen();
    if (typeof ref === "string") return HsmKey.create(await this.#withCertificates(await findKey(this.#token, ref)), options);
    const { kid, alg, use, keyOps, ...reference } = ref as KeyReference & HsmKeyOptions;
    const inline: HsmKeyOptions = { ...(kid !== undefined ? { kid } : {}), ...(alg !== undefined ? { alg } : {}), ...(use !== undefined ? { use } : {}), ...(keyOps !== undefined ? { keyOps } : {}) };
    return HsmKey.create(await this.#withCertificates(await findKey(this.#token, reference)), { ...inline, ...options });
  }

  /**
   * Store `certificate` (an @peculiar/x509 or node:crypto X509Certificate, PEM, or DER) on the token
   * beside `key` (same CKA_ID and label), replacing the one stored before. Its public key must be the
   * key's. From then on `key.exportPublic()` and key sets publish it as `x5c` / `x5t#S256`.
   */
  async storeCertificate(key: HsmKey, certificate: string | BufferSource | { rawData: ArrayBuffer } | { raw: Buffer }): Promise<void> {
    this.#token.assertOpen();
    const { storeCertificate } = await import("./x509/store.js");
    await storeCertificate(this, key, certificateInput(certificate));
  }

  /** The certificate stored for `key` (an @peculiar/x509 X509Certificate), or undefined. */
  async getCertificate(key: HsmKey): Promise<import("@peculiar/x509").X509Certificate | undefined> {
    this.#token.assertOpen();
    const { getCertificate } = await import("./x509/store.js");
    return getCertificate(this, key);
  }

  async #withCertificates(parts: KeyParts): Promise<KeyParts> {
    const owner = (parts.privateKey ?? parts.publicKey)?.info;
    if (!owner || (!owner.id?.length && owner.label === undefined)) return parts;
    return { ...parts, certificates: await findCertificateValues(this.#token, owner) };
  }

  /**
   * Create a persistent key on the token for `alg`: sensitive and never extractable. RSA keys are
   * 2048 bits unless `modulusLength` says otherwise; key pairs can sign and decrypt unless `use`
   * narrows them.
   */
  async generateKey(alg: JoseAlgorithm | string, options: GenerateKeyOptions = {}): Promise<HsmKey> {
    this.#token.assertOpen();
    const shape = shapeOf(alg);
    const spec = specFor(shape.alg, options);
    const { label, id } = await this.#newIdentity(options.label, options.id);
    const create = { label, id, persistent: true, capabilities: capabilitiesFor(spec.kind, options.use) };
    const parts =
      spec.kind === "AES" || spec.kind === "HMAC"
        ? { secretKey: await generateSecretKey(this.#token, spec, create) }
        : await generateKeyPair(this.#token, spec, create);
    return this.#hsmKey(parts, { ...options, alg: shape.alg, ...(options.use ? { use: options.use } : {}) });
  }

  /**
   * The key labelled `options.label`, shaped for `alg`; if the token has none, one generated for
   * `alg` with these options. For services and scripts that create their key on first start.
   */
  async ensureKey(alg: JoseAlgorithm | string, options: GenerateKeyOptions & { label: string }): Promise<HsmKey> {
    const { label, kid, keyOps } = options;
    try {
      return await this.getKey(label, { alg, ...(kid !== undefined ? { kid } : {}), ...(keyOps !== undefined ? { keyOps } : {}) });
    } catch (error) {
      if (!(error instanceof KeyNotFoundError) || error.code !== "ERR_HSM_KEY_NOT_FOUND") throw error;
      return this.generateKey(alg, options);
    }
  }

  /**
   * Move an existing private or secret key into the token as a persistent, non-extractable key.
   * `key` is a private JWK (RSA, EC, OKP, or `oct` with `alg`) or a PKCS#8 PEM string.
   */
  async importKey(key: JsonWebKey | string, options: ImportKeyOptions = {}): Promise<HsmKey> {
    this.#token.assertOpen();
    const jwk = typeof key === "string" ? undefined : key;
    const alg = options.alg ?? jwk?.alg;
    let material: KeyMaterial;
    if (typeof key === "string") {
      material = materialFromPkcs8(key);
    } else {
      if (jwk?.kty === "oct" && alg === undefined) throw new InvalidInputError("Importing an 'oct' JWK needs `alg` (HS256... or A256KW...)");
      material = materialFromJwk(key, alg !== undefined && shapeOf(alg).kind === "AES" ? "AES" : "HMAC");
      if (material.kind === "RSA" || material.kind === "EC" || material.kind === "OKP") {
        if (typeof key.d !== "string") throw new InvalidInputError("importKey takes a private JWK (with 'd'); public keys need no token");
      }
    }
    const { label, id } = await this.#newIdentity(options.label, options.id);
    const imported = await importKeyMaterial(this.#token, material, { label, id, persistent: true, capabilities: capabilitiesFor(material.kind, options.use) });
    return this.#hsmKey(imported, { ...options, ...(alg !== undefined ? { alg } : {}) });
  }

  /** Every key on the token, one HsmKey per key pair or secret key. */
  async listKeys(): Promise<HsmKey[]> {
    this.#token.assertOpen();
    const objects = await listKeyObjects(this.#token);
    const publics = objects.filter((o) => o.info.class === "public");
    const used = new Set<TokenKey>();
    const keys: (HsmKey | undefined)[] = [];
    for (const o of objects) {
      if (o.info.class === "public") continue;
      if (o.info.class === "secret") {
        keys.push(await this.#hsmKeyOrSkip({ secretKey: o }));
        continue;
      }
      const pub = publics.find((p) => !used.has(p) && (o.info.id?.length ? sameBytes(p.info.id, o.info.id) : p.info.label === o.info.label));
      if (pub) used.add(pub);
      keys.push(await this.#hsmKeyOrSkip(await this.#withCertificates({ privateKey: o, ...(pub ? { publicKey: pub } : {}) })));
    }
    for (const p of publics) if (!used.has(p)) keys.push(await this.#hsmKeyOrSkip(await this.#withCertificates({ publicKey: p })));
    return keys.filter((k): k is HsmKey => k !== undefined);
  }

  /** Destroy every object of the key `ref` names (private, public, secret and certificates with its id). Returns how many. */
  async deleteKey(ref: KeyRef): Promise<number> {
    this.#token.assertOpen();
    const found = await findKey(this.#token, ref);
    const parts = [found.privateKey, found.publicKey, found.secretKey].filter((p): p is TokenKey => p !== undefined);
    const owner = parts.find((p) => p.info.id?.length)?.info;
    await destroyObjects(this.#token, parts);
    return parts.length + (owner ? await deleteCertificateObjects(this.#token, owner) : 0);
  }

  /** Sessions and token threads in use, and objects on the token (for monitoring, and for tests that check nothing leaked). */
  async stats(): Promise<{ sessions: PoolStats; threads: ThreadStats; objects: { token: number; session: number } }> {
    return { sessions: this.#token.stats(), threads: this.#token.threadStats(), objects: await countObjects(this.#token) };
  }

  /** Close every session and release the module. Idempotent. */
  async close(): Promise<void> {
    await this.#token.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The underlying token, for the layers built on this one (CLI, X.509). */
  get token(): Token {
    return this.#token;
  }

  toJSON(): object {
    return { ...this.info, closed: this.closed };
  }

  [inspect.custom](): string {
    const i = this.info;
    return `Hsm { token: '${i.label}', serial: '${i.serial}', module: '${i.module}'${i.embedded ? ", embedded development token" : ""}${this.closed ? ", closed" : ""} }`;
  }

  async #hsmKey(parts: { privateKey?: TokenKey; publicKey?: TokenKey; secretKey?: TokenKey }, options: HsmKeyOptions): Promise<HsmKey> {
    try {
      return await HsmKey.create(parts, options);
    } catch (error) {
      // The objects were just created for this key: do not leave them behind.
      const handles = [parts.privateKey, parts.publicKey, parts.secretKey].filter((p): p is TokenKey => !!p);
      await destroyObjects(this.#token, handles).catch(() => undefined);
      throw error;
    }
  }

  async #hsmKeyOrSkip(parts: KeyParts): Promise<HsmKey | undefined> {
    try {
      return await HsmKey.create(parts);
    } catch {
      return undefined;
    }
  }

  async #newIdentity(label: string | undefined, id: Uint8Array | string | undefined): Promise<{ label: string; id: Uint8Array }> {
    const bytes = id === undefined ? new Uint8Array(randomBytes(16)) : resolveReference({ id }).id!;
    const name = label ?? `hsmkey-${Buffer.from(bytes).toString("hex").slice(0, 12)}`;
    for (const ref of [{ label: name }, { id: bytes }]) {
      try {
        await findKey(this.#token, ref);
      } catch (error) {
        if (error instanceof KeyNotFoundError && error.code === "ERR_HSM_KEY_NOT_FOUND") continue;
        throw error;
      }
      throw new InvalidInputError(`A key with ${describeReference(ref)} already exists on ${this.#token.describe()}`);
    }
    return { label: name, id: bytes };
  }
}

/** PEM or DER as given, or the DER inside an @peculiar/x509 (`rawData`) or node:crypto (`raw`) certificate. */
function certificateInput(certificate: string | BufferSource | { rawData: ArrayBuffer } | { raw: Buffer }): string | BufferSource {
  if (typeof certificate === "string" || ArrayBuffer.isView(certificate) || certificate instanceof ArrayBuffer) return certificate;
  if ("rawData" in certificate) return certificate.rawData;
  if ("raw" in certificate) return new Uint8Array(certificate.raw);
  throw new InvalidInputError("A certificate is PEM, DER bytes, or an X509Certificate");
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return !!a && !!b && Buffer.from(a).equals(Buffer.from(b));
}

/**
 * Open a token: `openHsm({ module, token, pin })`, `openHsm("pkcs11:token=...;?module-path=...")`,
 * or `openHsm()` for the environment (HSMKEY_*) or, failing that, the embedded development token.
 */
export function openHsm(options: HsmOptions | string = {}): Promise<Hsm> {
  return Hsm.open(options);
}

/** Open a token, run `fn`, and close the token whatever happens. */
export async function withHsm<T>(options: HsmOptions | string, fn: (hsm: Hsm) => Promise<T> | T): Promise<T> {
  const hsm = await openHsm(options);
  try {
    return await fn(hsm);
  } finally {
    await hsm.close();
  }
}
