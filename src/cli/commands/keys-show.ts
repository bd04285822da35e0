import type { Command } from "../command.js";
import { keyRow } from "../key-info.js";

export const keysShow: Command = {
  path: ["keys", "show"],
  summary: "Show one key: identity, type, algorithms, public JWK and certificate",
  usage: "--key K",
  help: ["--key K   label, kid, id:HEX or pkcs11: URI"],
  options: { key: { type: "string" } },
  async run(ctx, v) {
    const hsm = await ctx.hsm();
    const key = await ctx.key(v.key);
    const row = await keyRow(hsm, key);
    const jwk = key.kty === "oct" ? undefined : key.exportPublic();
    ctx.print({ ...row, jwk }, () => {
      const lines = Object.entries(row).map(([k, value]) => `${(k + ":").padEnd(13)} ${Array.isArray(value) ? value.join(",") : (value ?? "-")}`);
      if (jwk) lines.push(`${"jwk:".padEnd(13)} ${JSON.stringify(jwk)}`);
      return lines.join("\n");
    });
  },
};
