/**
 * jwks-server: a small node:http service that keeps its signing keys in a PKCS#11 token.
 *
 *   GET  /.well-known/jwks.json   the public keys (signing key + retired keys still in use)
 *   POST /token                   {"sub": "...", ...claims} -> a JWT signed in the token
 *   POST /rotate                  new signing key (Authorization: Bearer $JWKS_ADMIN_TOKEN)
 *
 * Run it (embedded development token, or HSMKEY_MODULE/HSMKEY_TOKEN/HSMKEY_PIN_FILE for a real one):
 *
 *   npx tsx examples/jwks-server/server.ts
 *
 * Or use startServer() in-process (the tests do). POST /token hands a token to anyone who can
 * reach it: this is an example; put your client authentication in front of it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { installShim, openHsm, type Hsm } from "../../src/index.js";
import { requireAdmin } from "./admin.js";
import { checkAdminToken, checkAlgorithm, checkLifetime, configFromEnv, DEFAULTS, type SigningAlgorithm } from "./config.js";
import { HttpError, readJson, sendError, sendJson } from "./http.js";
import { KeyRing, type RotationResult } from "./key-ring.js";
import { issueToken, parseTokenRequest } from "./tokens.js";

export const JWKS_PATH = "/.well-known/jwks.json";

export interface ServerOptions {
  /** Port to listen on; 0 picks a free one. Default 8080. */
  port?: number;
  /** Address to listen on. Default 127.0.0.1 (loopback only). */
  host?: string;
  /** Signing algorithm of new keys. Default ES256. */
  alg?: SigningAlgorithm | string;
  /** Lifetime of issued tokens, and how long a rotated-out key stays published. Default 600. */
  tokenLifetimeSeconds?: number;
  /** An open token; default openHsm() (from the HSMKEY_* environment). A given Hsm is not closed by close(). */
  hsm?: Hsm;
  /** `iss` of issued tokens. Default the server's URL. */
  issuer?: string;
  /** `aud` of issued tokens. Default "hsmkey-example". */
  audience?: string;
  /** Bearer token for POST /rotate (at least 16 characters); without it, HTTP rotation is refused. */
  adminToken?: string;
  /** Keys of this service are labelled `<prefix>/<alg>/<created ms>/<random>`. Default "jwks-server". */
  labelPrefix?: string;
  /** Destroy retired keys on the token. Default false (they stay, unused). */
  destroyRetiredKeys?: boolean;
  /** Largest accepted request body in bytes. Default 64 KiB. */
  maxBodyBytes?: number;
  /** Clock in milliseconds since the epoch (tests advance it). Default Date.now. */
  now?: () => number;
  /** Structured log sink. Default: silent. */
  log?: (event: string, fields?: Record<string, unknown>) => void;
}

export interface RunningServer {
  url: string;
  issuer: string;
  audience: string;
  server: Server;
  /** Rotate the signing key (the same as an authorised POST /rotate). */
  rotate(): Promise<RotationResult>;
  /** Published keys: kid, alg, label, signing, retiresAt. */
  keys(): ReturnType<KeyRing["describe"]>;
  /** Stop listening, drop connections, and close the token if startServer opened it. */
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const alg = checkAlgorithm(options.alg ?? DEFAULTS.alg);
  const lifetime = checkLifetime(options.tokenLifetimeSeconds ?? DEFAULTS.tokenLifetimeSeconds);
  const adminToken = checkAdminToken(options.adminToken);
  const now = options.now ?? Date.now;
  const log = options.log ?? (() => {});
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
  const audience = options.audience ?? DEFAULTS.audience;
  const host = options.host ?? DEFAULTS.host;

  installShim();
  const ownsHsm = options.hsm === undefined;
  const hsm = options.hsm ?? (await openHsm());
  let ring: KeyRing;
  try {
    log("token opened", { token: hsm.info.label, serial: hsm.info.serial, embedded: hsm.info.embedded });
    ring = await KeyRing.open(hsm, {
      alg,
      tokenLifetimeSeconds: lifetime,
      labelPrefix: options.labelPrefix ?? DEFAULTS.labelPrefix,
      destroyRetiredKeys: options.destroyRetiredKeys ?? false,
      now,
      log,
    });
  } catch (error) {
    if (ownsHsm) await hsm.close();
    throw error;
  }

  let issuer = options.issuer ?? "";
  const jwksCache = `public, max-age=${Math.min(300, lifetime)}`;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const method = req.method ?? "GET";
    if (path === JWKS_PATH) {
      allow(method, ["GET", "HEAD"]);
      sendJson(res, 200, ring.jwks(), { "cache-control": jwksCache });
    } else if (path === "/token") {
      allow(method, ["POST"]);
      const request = parseTokenRequest(await readJson(req, maxBodyBytes));
      const key = ring.signingKey;
      const issued = await issueToken(key, request, { issuer, audience, lifetimeSeconds: lifetime, now: now() });
      log("token issued", { kid: key.kid, sub: request.sub });
      sendJson(res, 200, { access_token: issued.token, token_type: "Bearer", expires_in: lifetime }, { "cache-control": "no-store" });
    } else if (path === "/rotate") {
      allow(method, ["POST"]);
      requireAdmin(req, adminToken);
      const result = await ring.rotate();
      sendJson(res, 200, toJson(result), { "cache-control": "no-store" });
    } else {
      throw new HttpError(404, "not_found", `No route for ${path}`);
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) {
        sendError(res, error);
        return;
      }
      log("request failed", { method: req.method, url: req.url, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
      if (!res.headersSent) sendError(res, new HttpError(500, "server_error", "The request could not be processed"));
      else res.destroy();
    });
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  try {
    await new Promise<void>((done, fail) => {
      server.once("error", fail);
      server.listen(options.port ?? DEFAULTS.port, host, () => {
        server.off("error", fail);
        done();
      });
    });
  } catch (error) {
    await ring.settled();
    if (ownsHsm) await hsm.close();
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  const url = `http://${formatHost(host)}:${port}`;
  if (!issuer) issuer = host === "0.0.0.0" || host === "::" ? `http://localhost:${port}` : url;
  log("listening", { url, issuer, audience, alg, tokenLifetimeSeconds: lifetime, rotationOverHttp: adminToken !== undefined });

  let closing: Promise<void> | undefined;
  return {
    url,
    issuer,
    audience,
    server,
    rotate: () => ring.rotate(),
    keys: () => ring.describe(),
    close() {
      closing ??= (async () => {
        await new Promise<void>((done) => {
          server.close(() => done());
          server.closeAllConnections();
        });
        await ring.settled();
        if (ownsHsm) await hsm.close();
        log("closed");
      })();
      return closing;
    },
  };
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) throw new HttpError(405, "method_not_allowed", `Use ${methods.join(" or ")}`, { allow: methods.join(", ") });
}

function toJson(result: RotationResult): object {
  return {
    kid: result.kid,
    alg: result.alg,
    ...(result.previous ? { previous: { kid: result.previous.kid, retires_at: result.previous.retiresAt.toISOString() } } : {}),
  };
}

function formatHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** Script entry: configuration from the environment, JSON log lines on stdout, clean stop on SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const config = configFromEnv();
  const log = (event: string, fields: Record<string, unknown> = {}) => {
    console.log(JSON.stringify({ time: new Date().toISOString(), event, ...fields }));
  };
  const running = await startServer({
    port: config.port,
    host: config.host,
    alg: config.alg,
    tokenLifetimeSeconds: config.tokenLifetimeSeconds,
    audience: config.audience,
    labelPrefix: config.labelPrefix,
    destroyRetiredKeys: config.destroyRetiredKeys,
    ...(config.issuer !== undefined ? { issuer: config.issuer } : {}),
    ...(config.adminToken !== undefined ? { adminToken: config.adminToken } : {}),
    log,
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log("stopping", { signal });
    running.close().then(
      () => process.exit(0),
      (error: Error) => {
        log("stop failed", { error: error.message });
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((error: unknown) => {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    console.error(`jwks-server: ${message}`);
    process.exit(1);
  });
}
