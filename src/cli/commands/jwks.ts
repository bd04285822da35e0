import type { HsmKey } from "../../jose/hsm-key.js";
import type { Command } from "../command.js";

export const jwks: Command = {
  path: ["jwks"],
  summary: "Print the public JWKS of the token (x5c and x5t#S256 where a certificate is stored)",
  usage: "[--key K]...",
  help: ["--key K   only these keys (repeatable); default every key pair on the token", "The JWKS is JSON whether or not --json is given."],
  options: { key: { type: "string", multiple: true } },
  async run(ctx, v) {
    const hsm = await ctx.hsm();
    const refs = (v.key as string[] | undefined) ?? [];
    const keys: HsmKey[] = refs.length ? await Promise.all(refs.map((r) => ctx.key(r))) : await hsm.listKeys();
    const published = keys.filter((k) => k.kty !== "oct" && k.publicKey).map((k) => k.exportPublic());
    ctx.out(JSON.stringify({ keys: published }, null, 2));
  },
};
