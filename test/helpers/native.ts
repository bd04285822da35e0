/**
 * Independent checks with node:crypto (no WebCrypto, no shim, no jose): verifying and producing
 * JWS signatures, and importing public JWKs, so that tests compare the token's output with a second
 * implementation rather than with itself.
 */
import {
  constants,
  createHmac,
  createPublicKey,
  sign as nodeSign,
  verify as nodeVerify,
  type JsonWebKey as NodeJwk,
  type KeyObject,
} from "node:crypto";
import assert from "node:assert/strict";
import type { Hsm } from "../../src/index.js";
import { leftovers } from "./token.js";

const HASH: Record<string, string> = { "256": "sha256", "384": "sha384", "512": "sha512" };

function hashOf(alg: string): string | null {
  if (alg === "EdDSA" || alg === "Ed25519") return null;
  const h = HASH[alg.slice(-3)];
  if (!h) throw new Error(`no hash for ${alg}`);
  return h;
}

function signOptions(alg: string): { padding?: number; saltLength?: number; dsaEncoding?: "ieee-p1363" } {
  if (alg.startsWith("PS")) return { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(-3)) / 8 };
  if (alg.startsWith("ES")) return { dsaEncoding: "ieee-p1363" };
  return {};
}

/** A public key object for node:crypto from a public JWK (no WebCrypto involved). */
export function nodePublicKey(jwk: JsonWebKey): KeyObject {
  const { kty, n, e, crv, x, y } = jwk;
  return createPublicKey({ key: { kty, n, e, crv, x, y } as NodeJwk, format: "jwk" });
}

function parts(compact: string): { signingInput: Buffer; signature: Buffer; header: Record<string, unknown> } {
  const [h, p, s] = compact.split(".");
  assert.ok(h !== undefined && p !== undefined && s !== undefined, "not a compact JWS");
  return {
    signingInput: Buffer.from(`${h}.${p}`),
    signature: Buffer.from(s, "base64url"),
    header: JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as Record<string, unknown>,
  };
}

/** Verify a compact JWS with node:crypto and the public JWK (asymmetric algorithms). */
export function nodeVerifyCompact(compact: string, publicJwk: JsonWebKey): boolean {
  const { signingInput, signature, header } = parts(compact);
  const alg = String(header.alg);
  const key = nodePublicKey(publicJwk);
  return nodeVerify(hashOf(alg), signingInput, { key, ...signOptions(alg) }, signature);
}

/** Verify a compact HS* JWS with node:crypto's HMAC and the raw secret. */
export function nodeVerifyHmacCompact(compact: string, secret: Uint8Array): boolean {
  const { signingInput, signature, header } = parts(compact);
  const expected = createHmac(hashOf(String(header.alg))!, secret).update(signingInput).digest();
  return expected.equals(signature);
}

/** Produce a compact JWS with node:crypto only (header and payload as given). */
export function nodeSignCompact(
  alg: string,
  payload: Record<string, unknown>,
  key: KeyObject | Uint8Array,
  extraHeader: Record<string, unknown> = {},
): string {
  const h = Buffer.from(JSON.stringify({ alg, ...extraHeader })).toString("base64url");
  const p = Buffer.from(JSON.stringify(payload)).toString("base64url");
  const input = Buffer.from(`${h}.${p}`);
  let sig: Buffer;
  if (alg.startsWith("HS")) sig = createHmac(hashOf(alg)!, key as Uint8Array).update(input).digest();
  else sig = nodeSign(hashOf(alg), input, { key: key as KeyObject, ...signOptions(alg) });
  return `${h}.${p}.${sig.toString("base64url")}`;
}

/** Flip one bit in the middle of a base64url segment of a compact serialisation. */
export function tamperSegment(compact: string, index: number): string {
  const segments = compact.split(".");
  const raw = Buffer.from(segments[index]!, "base64url");
  assert.ok(raw.length > 0, "cannot tamper with an empty segment");
  raw[Math.floor(raw.length / 2)]! ^= 0x01;
  segments[index] = raw.toString("base64url");
  return segments.join(".");
}

/** Assert a promise rejects with an error whose constructor is `cls` (by identity) and optional code. */
export async function rejectsWith(promise: Promise<unknown>, cls: abstract new (...args: never[]) => Error, code?: string): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught !== undefined, `expected a rejection with ${cls.name}`);
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${(caught as Error)?.name}: ${(caught as Error)?.message}`);
  if (code !== undefined) assert.equal((caught as { code?: string }).code, code);
  return caught as Error;
}

/** The check every test file ends with: nothing left on the token, no session still lent. */
export async function assertNoLeftovers(hsm: Hsm): Promise<void> {
  assert.deepEqual(await leftovers(hsm), { sessionObjects: 0, busySessions: 0 });
}
