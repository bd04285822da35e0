import { compactDecrypt } from "jose";
import type { Command } from "../command.js";
import { EXIT, describeError, UsageError } from "../errors.js";
import { tokenKeySet } from "./jose-keys.js";

export const jweDecrypt: Command = {
  path: ["jwe", "decrypt"],
  summary: "Decrypt a compact JWE with a key in the token; prints the plaintext",
  usage: "JWE|@FILE|- [--key K]",
  help: ["Without --key the key is chosen by the JWE's kid among every key on the token."],
  options: { key: { type: "string" } },
  maxPositionals: 1,
  async run(ctx, v, positionals) {
    const input = positionals[0];
    if (!input) throw new UsageError("Missing the JWE to decrypt (or - for stdin)");
    const jwe = ctx.text(input).trim();
    let result;
    try {
      if (typeof v.key === "string") {
        const header = JSON.parse(Buffer.from(jwe.split(".")[0] ?? "", "base64url").toString("utf8") || "{}") as { alg?: string };
        const key = await ctx.key(v.key, header.alg);
        result = await compactDecrypt(jwe, (key.kty === "oct" ? key.secretKey : key.privateKey)!);
      } else {
        result = await compactDecrypt(jwe, (await tokenKeySet(ctx)).resolver);
      }
    } catch (error) {
      const code = (error as { code?: string }).code ?? "";
      if (code.startsWith("ERR_HSM_") && code !== "ERR_HSM_KEY_NOT_FOUND") throw error;
      process.stderr.write(`hsmkey: cannot decrypt: ${describeError(error)}\n`);
      return EXIT.FAILED;
    }
    const text = new TextDecoder().decode(result.plaintext);
    if (ctx.json) ctx.out(JSON.stringify({ header: result.protectedHeader, plaintext: text }, null, 2));
    else process.stdout.write(text);
  },
};
