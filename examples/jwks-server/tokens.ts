/**
 * Issuing JWTs: checks the requested claims and signs with the ring's signing key through jose's
 * SignJWT (the shim routes crypto.subtle.sign with the HSM key to the token).
 */
import { randomUUID } from "node:crypto";
import { SignJWT, type JWTPayload } from "jose";
import type { HsmKey } from "../../src/index.js";
import { HttpError } from "./http.js";

/** Claims the service sets itself; a request may not choose them. */
const RESERVED = ["iss", "aud", "iat", "exp", "nbf", "jti"];

export interface TokenRequest {
  sub: string;
  claims: Record<string, unknown>;
}

/** Validate a POST /token body: an object with a string `sub` and optional extra claims. */
export function parseTokenRequest(body: unknown): TokenRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(400, "invalid_request", "The body must be a JSON object with a 'sub' claim");
  }
  const { sub, ...claims } = body as Record<string, unknown>;
  if (typeof sub !== "string" || sub.length === 0 || sub.length > 255) {
    throw new HttpError(400, "invalid_request", "'sub' must be a non-empty string of at most 255 characters");
  }
  const reserved = Object.keys(claims).filter((name) => RESERVED.includes(name));
  if (reserved.length) throw new HttpError(400, "invalid_request", `The service sets these claims itself: ${reserved.join(", ")}`);
  return { sub, claims };
}

export interface IssueOptions {
  issuer: string;
  audience: string;
  lifetimeSeconds: number;
  /** Milliseconds since the epoch. */
  now: number;
}

export async function issueToken(key: HsmKey, request: TokenRequest, options: IssueOptions): Promise<{ token: string; expiresAt: number }> {
  if (!key.privateKey) throw new Error(`Key '${key.kid}' has no private key`);
  const iat = Math.floor(options.now / 1000);
  const exp = iat + options.lifetimeSeconds;
  const token = await new SignJWT(request.claims as JWTPayload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
    .setSubject(request.sub)
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(randomUUID())
    .sign(key.privateKey);
  return { token, expiresAt: exp };
}
