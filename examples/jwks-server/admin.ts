/**
 * The admin guard for POST /rotate: `Authorization: Bearer <JWKS_ADMIN_TOKEN>`, compared in
 * constant time (SHA-256 of both sides, so that the lengths match for timingSafeEqual and the
 * comparison reveals nothing about the configured token's length).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { HttpError } from "./http.js";

export function requireAdmin(req: IncomingMessage, adminToken: string | undefined): void {
  if (adminToken === undefined) {
    throw new HttpError(403, "rotation_disabled", "Rotation over HTTP is disabled: the server has no admin token (JWKS_ADMIN_TOKEN)");
  }
  const match = /^Bearer ([^\s]+)$/.exec(req.headers.authorization ?? "");
  if (!match || !sameSecret(match[1]!, adminToken)) {
    throw new HttpError(401, "unauthorized", "A valid admin bearer token is required", { "www-authenticate": 'Bearer realm="jwks-server-admin"' });
  }
}

function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}
