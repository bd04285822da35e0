/**
 * The live capability probe: which JOSE algorithms this token can really do. For each algorithm it
 * makes throwaway session keys, runs the private-key operation in the token and checks the result
 * with Node's native WebCrypto, then destroys the keys. Mechanism lists alone mislead (SoftHSM lists
 * CKM_RSA_PKCS_OAEP yet refuses SHA-256 with it), hence a probe.
 */
import { generateKeyPair, generateSecretKey, type KeyCapabilities } from "../pkcs11/keygen.js";
import type { TokenKey } from "../pkcs11/token-key.js";
import type { Token } from "../pkcs11/token.js";
import { destroyObjects } from "../pkcs11/keygen.js";
import { HsmSubtleCrypto } from "../webcrypto/subtle.js";
import { nativeSubtle } from "../webcrypto/native.js";
import { JOSE_ALGORITHMS, shapeOf, type JoseAlgorithm } from "./algorithms.js";
import { createHsmCryptoKey } from "../webcrypto/crypto-key.js";
import { nativePublicKey, publicJwkOf } from "../webcrypto/public-key.js";
import { keyAlgorithm } from "./algorithms.js";
import { specFor } from "./key-spec.js";

export interface ProbeResult {
  alg: JoseAlgorithm;
  supported: boolean;
  /** Why not, when not supported. */
  reason?: string;
}

const ALL: KeyCapabilities = { sign: true, verify: true, encrypt: true, decrypt: true, wrap: true, unwrap: true, derive: true };

export async function probeAlgorithms(token: Token, algorithms: readonly JoseAlgorithm[] = JOSE_ALGORITHMS): Promise<ProbeResult[]> {
  const subtle = new HsmSubtleCrypto();
  const results: ProbeResult[] = [];
  for (const alg of algorithms) {
    if (alg === "Ed25519" || /^A\d+GCM$/.test(alg)) continue; // same keys and operations as EdDSA / dir
    const made: TokenKey[] = [];
    try {
      const spec = specFor(alg);
      const options = { persistent: false, capabilities: ALL, label: "hsmkey-probe" };
      const parts =
        spec.kind === "AES" || spec.kind === "HMAC"
          ? { secretKey: await generateSecretKey(token, spec, options) }
          : await generateKeyPair(token, spec, options);
      made.push(...Object.values(parts));
      await exercise(subtle, alg, await probeKeys(parts, alg));
      results.push({ alg, supported: true });
    } catch (error) {
      results.push({ alg, supported: false, reason: (error as Error).message });
    } finally {
      if (made.length) await destroyObjects(token, made).catch(() => undefined);
    }
  }
  return results;
}

interface ProbeKeys {
  privateKey?: CryptoKey;
  publicKey?: CryptoKey;
  secretKey?: CryptoKey;
}

/**
 * CryptoKeys shaped for `alg` straight from the token objects, bypassing HsmKey's table of known
 * token limits: the probe asks the token itself.
 */
async function probeKeys(parts: { privateKey?: TokenKey; publicKey?: TokenKey; secretKey?: TokenKey }, alg: JoseAlgorithm): Promise<ProbeKeys> {
  const shape = shapeOf(alg);
  const main = (parts.privateKey ?? parts.secretKey)!;
  const algorithm = keyAlgorithm(shape, main.info);
  const type = main.info.class === "secret" ? "secret" : "private";
  const own = createHsmCryptoKey(main, { type, algorithm, usages: shape.privateUsages });
  if (type === "secret") return { secretKey: own };
  return { privateKey: own, publicKey: await nativePublicKey(publicJwkOf(parts.publicKey!.info), algorithm, shape.publicUsages) };
}

const DATA = new TextEncoder().encode("hsmkey capability probe");

async function exercise(subtle: HsmSubtleCrypto, alg: JoseAlgorithm, key: ProbeKeys): Promise<void> {
  const shape = shapeOf(alg);
  const name = shape.webcrypto.name;
  const signParams = name === "ECDSA" ? { name, hash: `SHA-${alg.slice(2)}` } : name === "RSA-PSS" ? { name, saltLength: 32 } : { name };
  const fail = (what: string) => {
    throw new Error(`${what} gave a wrong result`);
  };
  switch (name) {
    case "RSASSA-PKCS1-v1_5":
    case "RSA-PSS":
    case "ECDSA":
    case "Ed25519": {
      const signature = await subtle.sign(signParams, key.privateKey!, DATA);
      if (!(await nativeSubtle.verify(signParams, key.publicKey!, signature, DATA))) fail("signing");
      return;
    }
    case "HMAC": {
      const mac = await subtle.sign("HMAC", key.secretKey!, DATA);
      if (!(await subtle.verify("HMAC", key.secretKey!, mac, DATA))) fail("HMAC");
      return;
    }
    case "RSA-OAEP": {
      const ciphertext = await nativeSubtle.encrypt({ name }, key.publicKey!, DATA);
      const plain = new Uint8Array(await subtle.decrypt({ name }, key.privateKey!, ciphertext));
      if (Buffer.compare(plain, DATA) !== 0) fail("RSA-OAEP");
      return;
    }
    case "ECDH": {
      const namedCurve = (key.privateKey!.algorithm as EcKeyAlgorithm).namedCurve;
      const peer = (await nativeSubtle.generateKey({ name, namedCurve }, true, ["deriveBits"])) as CryptoKeyPair;
      const ours = new Uint8Array(await subtle.deriveBits({ name, public: peer.publicKey } as EcdhKeyDeriveParams, key.privateKey!, null as unknown as number));
      const theirs = new Uint8Array(await nativeSubtle.deriveBits({ name, public: key.publicKey! }, peer.privateKey, ours.length * 8));
      if (Buffer.compare(ours, theirs) !== 0) fail("ECDH");
      return;
    }
    case "AES-KW": {
      const cek = await nativeSubtle.generateKey({ name: "AES-GCM", length: 128 }, true, ["encrypt"]);
      const wrapped = await subtle.wrapKey("raw", cek, key.secretKey!, "AES-KW");
      const back = await subtle.unwrapKey("raw", wrapped, key.secretKey!, "AES-KW", "AES-GCM", true, ["encrypt"]);
      const a = new Uint8Array(await nativeSubtle.exportKey("raw", cek));
      const b = new Uint8Array(await nativeSubtle.exportKey("raw", back));
      if (Buffer.compare(a, b) !== 0) fail("AES-KW");
      return;
    }
    default: {
      const params = { name: "AES-GCM", iv: new Uint8Array(12), additionalData: DATA };
      const sealed = await subtle.encrypt(params, key.secretKey!, DATA);
      const opened = new Uint8Array(await subtle.decrypt(params, key.secretKey!, sealed));
      if (Buffer.compare(opened, DATA) !== 0) fail("AES-GCM");
    }
  }
}
