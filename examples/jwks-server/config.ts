/**
 * The service's settings: what startServer() accepts, and how the script reads them from the
 * environment. Token selection (HSMKEY_MODULE, HSMKEY_TOKEN, HSMKEY_PIN_FILE, HSMKEY_HOME, ...) is
 * not here: openHsm() reads it itself, and the PIN never passes through this code.
 */
import { readFileSync } from "node:fs";

/** Algorithms the service signs with: asymmetric only (a JWKS publishes public keys). */
export const SIGNING_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

export const DEFAULTS = {
  port: 8080,
  host: "127.0.0.1",
  alg: "ES256" as SigningAlgorithm,
  tokenLifetimeSeconds: 600,
  audience: "hsmkey-example",
  labelPrefix: "jwks-server",
  maxBodyBytes: 64 * 1024,
};

/** Shortest admin token accepted: a guessable one would make /rotate a denial-of-service switch. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function checkAlgorithm(alg: string): SigningAlgorithm {
  if (!(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) {
    throw new ConfigError(`Unsupported signing algorithm '${alg}' (one of: ${SIGNING_ALGORITHMS.join(", ")})`);
  }
  return alg as SigningAlgorithm;
}

export function checkLifetime(seconds: number): number {
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86_400) {
    throw new ConfigError(`Token lifetime must be a whole number of seconds from 1 to 86400, got ${seconds}`);
  }
  return seconds;
}

export function checkAdminToken(token: string | undefined): string | undefined {
  if (token === undefined) return undefined;
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new ConfigError(`The admin token must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters long`);
  }
  return token;
}

export interface EnvConfig {
  port: number;
  host: string;
  alg: SigningAlgorithm;
  tokenLifetimeSeconds: number;
  issuer: string | undefined;
  audience: string;
  adminToken: string | undefined;
  labelPrefix: string;
  destroyRetiredKeys: boolean;
}

/**
 * PORT, HOST, JWKS_ALG, JWKS_TOKEN_LIFETIME (seconds), JWKS_ISSUER, JWKS_AUDIENCE,
 * JWKS_ADMIN_TOKEN or JWKS_ADMIN_TOKEN_FILE (first line; for Docker/compose secrets),
 * JWKS_LABEL_PREFIX, JWKS_DESTROY_RETIRED_KEYS=1.
 */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): EnvConfig {
  const port = env.PORT ? Number(env.PORT) : DEFAULTS.port;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new ConfigError(`PORT must be a port number, got '${env.PORT}'`);
  const lifetime = env.JWKS_TOKEN_LIFETIME ? Number(env.JWKS_TOKEN_LIFETIME) : DEFAULTS.tokenLifetimeSeconds;
  return {
    port,
    host: env.HOST || DEFAULTS.host,
    alg: checkAlgorithm(env.JWKS_ALG || DEFAULTS.alg),
    tokenLifetimeSeconds: checkLifetime(lifetime),
    issuer: env.JWKS_ISSUER || undefined,
    audience: env.JWKS_AUDIENCE || DEFAULTS.audience,
    adminToken: checkAdminToken(env.JWKS_ADMIN_TOKEN || adminTokenFromFile(env.JWKS_ADMIN_TOKEN_FILE)),
    labelPrefix: env.JWKS_LABEL_PREFIX || DEFAULTS.labelPrefix,
    destroyRetiredKeys: env.JWKS_DESTROY_RETIRED_KEYS === "1" || env.JWKS_DESTROY_RETIRED_KEYS === "true",
  };
}

/** First line of the file; the path may appear in errors, the content never does. */
function adminTokenFromFile(path: string | undefined): string | undefined {
  if (!path) return undefined;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`Cannot read JWKS_ADMIN_TOKEN_FILE ${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  const token = text.split(/\r?\n/)[0]?.trim() ?? "";
  if (token === "") throw new ConfigError(`JWKS_ADMIN_TOKEN_FILE ${path} is empty`);
  return token;
}
