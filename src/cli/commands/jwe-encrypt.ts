import { CompactEncrypt } from "jose";
import { shapeOf } from "../../jose/algorithms.js";
import { UnsupportedAlgorithmError } from "../../errors.js";
import type { HsmKey } from "../../jose/hsm-key.js";
import type { Command } from "../command.js";
import { UsageError } from "../errors.js";

function defaultEncAlg(key: HsmKey): string {
  if (shapeOf(key.alg).use === "enc") return key.alg;
  if (key.kty === "RSA") return "RSA-OAEP";
  if (key.kty === "EC") return "ECDH-ES";
  throw new UnsupportedAlgorithmError(`Key '${key.kid}' (${key.alg}) is not an encryption key: give --alg`);
}

export const jweEncrypt: Command = {
  path: ["jwe", "encrypt"],
  summary: "Encrypt to a key of the token; prints the compact JWE",
  usage: "DATA|@FILE|- --key K [--alg ALG] [--enc A256GCM]",
  help: ["--alg ALG   key management algorithm (default the key's, RSA-OAEP for RSA, ECDH-ES for EC)", "--enc ENC   content encryption (default A256GCM)"],
  options: { key: { type: "string" }, alg: { type: "string" }, enc: { type: "string" } },
  maxPositionals: 1,
  async run(ctx, v, positionals) {
    const input = positionals[0];
    if (input === undefined) throw new UsageError("Missing the data to encrypt (text, @file, or - for stdin)");
    const data = ctx.text(input);
    const base = await ctx.key(v.key);
    const alg = typeof v.alg === "string" ? v.alg : defaultEncAlg(base);
    const enc = typeof v.enc === "string" ? v.enc : "A256GCM";
    if (shapeOf(alg).use !== "enc") throw new UnsupportedAlgorithmError(`${alg} is not a key management algorithm`);
    const key = base.as(alg);
    const encryptionKey = key.kty === "oct" ? key.secretKey : key.publicKey;
    if (!encryptionKey) throw new UnsupportedAlgorithmError(`Key '${key.kid}' cannot encrypt with ${alg}`);
    const jwe = await new CompactEncrypt(new TextEncoder().encode(data)).setProtectedHeader({ alg, enc, kid: key.kid }).encrypt(encryptionKey);
    ctx.print({ jwe, kid: key.kid, alg, enc }, () => jwe);
  },
};
