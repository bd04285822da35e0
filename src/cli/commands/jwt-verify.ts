import { jwtVerify, type JWTVerifyOptions } from "jose";
import type { Command } from "../command.js";
import { EXIT, describeError, UsageError } from "../errors.js";
import { fields } from "../output.js";
import { tokenKeySet } from "./jose-keys.js";

export const jwtVerifyCommand: Command = {
  path: ["jwt", "verify"],
  summary: "Verify a JWT against the token's keys; prints header and claims, exit code 1 if invalid",
  usage: "JWT|- [--key K] [--alg ALG]... [--iss I] [--aud A] [--sub S]",
  help: ["Without --key the key is chosen by the JWT's kid among every key on the token."],
  options: { key: { type: "string" }, alg: { type: "string", multiple: true }, iss: { type: "string" }, aud: { type: "string" }, sub: { type: "string" } },
  maxPositionals: 1,
  async run(ctx, v, positionals) {
    const input = positionals[0];
    if (!input) throw new UsageError("Missing the JWT to verify (or - for stdin)");
    const jwt = ctx.text(input).trim();
    const options: JWTVerifyOptions = {};
    if (v.alg) options.algorithms = v.alg as string[];
    if (typeof v.iss === "string") options.issuer = v.iss;
    if (typeof v.aud === "string") options.audience = v.aud;
    if (typeof v.sub === "string") options.subject = v.sub;
    let result;
    try {
      if (typeof v.key === "string") {
        const header = JSON.parse(Buffer.from(jwt.split(".")[0] ?? "", "base64url").toString("utf8") || "{}") as { alg?: string };
        const key = await ctx.key(v.key, header.alg);
        const verifyKey = key.kty === "oct" ? key.secretKey : key.publicKey;
        result = await jwtVerify(jwt, verifyKey!, options);
      } else {
        const set = await tokenKeySet(ctx);
        result = await jwtVerify(jwt, set.resolver, options);
      }
    } catch (error) {
      if (error instanceof UsageError) throw error;
      const code = (error as { code?: string }).code ?? "";
      if (code.startsWith("ERR_HSM_") && code !== "ERR_HSM_KEY_NOT_FOUND") throw error;
      process.stderr.write(`hsmkey: invalid JWT: ${describeError(error)}\n`);
      if (ctx.json) ctx.out(JSON.stringify({ valid: false, error: describeError(error) }));
      return EXIT.FAILED;
    }
    ctx.print({ valid: true, header: result.protectedHeader, payload: result.payload }, () =>
      [fields({ valid: true, alg: result.protectedHeader.alg, kid: result.protectedHeader.kid }), JSON.stringify(result.payload, null, 2)].join("\n"),
    );
  },
};
