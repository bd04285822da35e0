import type { Command } from "../command.js";
import { UsageError } from "../errors.js";
import { keyRow } from "../key-info.js";

export const keysImport: Command = {
  path: ["keys", "import"],
  summary: "Import a private JWK or PKCS#8 PEM into the token (non-extractable)",
  usage: "FILE|- [--label L] [--id HEX] [--alg ALG] [--use sig|enc]",
  help: ["FILE          a private JWK (JSON) or a PKCS#8 PEM (BEGIN PRIVATE KEY); - reads stdin", "--alg ALG     needed for oct JWKs without alg (HS256 or A256KW...)"],
  options: { label: { type: "string" }, id: { type: "string" }, alg: { type: "string" }, use: { type: "string" } },
  maxPositionals: 1,
  async run(ctx, v, positionals) {
    const source = positionals[0];
    if (!source) throw new UsageError("Missing the key file (a private JWK or PKCS#8 PEM; - for stdin)");
    const text = ctx.text(source === "-" ? "-" : `@${source}`).trim();
    let input: JsonWebKey | string;
    if (text.startsWith("{")) {
      try {
        input = JSON.parse(text) as JsonWebKey;
      } catch (error) {
        throw new UsageError(`${source} is not valid JSON: ${(error as Error).message}`);
      }
    } else if (text.includes("-----BEGIN")) {
      if (/-----BEGIN (RSA |EC |ENCRYPTED )PRIVATE KEY-----/.test(text)) {
        throw new UsageError(`${source} is not an unencrypted PKCS#8 PEM: convert it with 'openssl pkcs8 -topk8 -nocrypt'`);
      }
      input = text;
    } else {
      throw new UsageError(`${source} is neither a JWK (JSON) nor a PEM`);
    }
    if (v.use !== undefined && v.use !== "sig" && v.use !== "enc") throw new UsageError(`--use must be sig or enc, got '${v.use}'`);
    const hsm = await ctx.hsm();
    const key = await hsm.importKey(input, {
      ...(typeof v.label === "string" ? { label: v.label } : {}),
      ...(typeof v.id === "string" ? { id: v.id } : {}),
      ...(typeof v.alg === "string" ? { alg: v.alg } : {}),
      ...(v.use ? { use: v.use as "sig" | "enc" } : {}),
    });
    ctx.printFields(await keyRow(hsm, key, false)); // a new key has no certificate
  },
};
