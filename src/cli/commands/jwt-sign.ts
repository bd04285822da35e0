import { SignJWT, type JWTPayload } from "jose";
import { shapeOf } from "../../jose/algorithms.js";
import { UnsupportedAlgorithmError } from "../../errors.js";
import type { Command } from "../command.js";
import { UsageError } from "../errors.js";

export const jwtSign: Command = {
  path: ["jwt", "sign"],
  summary: "Sign a JWT with a key in the token; prints the compact JWT",
  usage: "--key K [--alg ALG] [--claims JSON|@FILE] [--exp 1h] [--iss I] [--aud A] [--sub S] [--no-iat]",
  help: [
    "--key K          label, kid, id:HEX or pkcs11: URI",
    "--alg ALG        signature algorithm (default the key's)",
    "--claims JSON    the payload as JSON, @file, or - for stdin (default {})",
    "--exp DURATION   expiry from now (e.g. 10m, 1h, 7d) or a unix time",
  ],
  options: {
    key: { type: "string" }, alg: { type: "string" }, claims: { type: "string" }, exp: { type: "string" },
    iss: { type: "string" }, aud: { type: "string", multiple: true }, sub: { type: "string" }, "no-iat": { type: "boolean" },
  },
  async run(ctx, v) {
    let payload: JWTPayload = {};
    if (typeof v.claims === "string") {
      const text = ctx.text(v.claims);
      try {
        payload = JSON.parse(text) as JWTPayload;
      } catch (error) {
        throw new UsageError(`--claims is not valid JSON: ${(error as Error).message}`);
      }
      if (typeof payload !== "object" || payload === null || Array.isArray(payload)) throw new UsageError("--claims must be a JSON object");
    }
    const key = await ctx.key(v.key);
    const alg = typeof v.alg === "string" ? v.alg : key.alg;
    const shape = shapeOf(alg);
    if (shape.use !== "sig") throw new UnsupportedAlgorithmError(`${alg} is not a signature algorithm`);
    const shaped = key.as(alg);
    const signingKey = shaped.kty === "oct" ? shaped.secretKey : shaped.privateKey;
    if (!signingKey) throw new UnsupportedAlgorithmError(`Key '${key.kid}' has no private key on the token to sign with`);
    const jwt = new SignJWT(payload).setProtectedHeader({ alg, kid: key.kid, typ: "JWT" });
    if (v["no-iat"] !== true && payload.iat === undefined) jwt.setIssuedAt();
    if (typeof v.exp === "string") jwt.setExpirationTime(/^\d+$/.test(v.exp) ? Number(v.exp) : v.exp);
    if (typeof v.iss === "string") jwt.setIssuer(v.iss);
    const aud = v.aud as string[] | undefined;
    if (aud?.length) jwt.setAudience(aud.length === 1 ? aud[0]! : aud);
    if (typeof v.sub === "string") jwt.setSubject(v.sub);
    let token: string;
    try {
      token = await jwt.sign(signingKey);
    } catch (error) {
      if ((error as Error).name === "TypeError") throw new UsageError((error as Error).message);
      throw error;
    }
    ctx.print({ jwt: token, kid: key.kid, alg }, () => token);
  },
};
