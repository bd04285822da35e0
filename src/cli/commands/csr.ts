import { writeFileSync } from "node:fs";
import type { Command } from "../command.js";
import { UsageError } from "../errors.js";

export const csr: Command = {
  path: ["csr"],
  summary: "Create a PKCS#10 certificate signing request signed by a key in the token",
  usage: "--key K --subject DN [--san NAME]... [--alg ALG] [--out FILE]",
  help: ["--subject DN   e.g. 'CN=api.example.com, O=Example'", "--san NAME     dns:NAME, ip:ADDR, email:ADDR or uri:URI (repeatable)", "--alg ALG      signature algorithm (default the key's; PS256 for RSA-PSS)"],
  options: { key: { type: "string" }, subject: { type: "string" }, san: { type: "string", multiple: true }, alg: { type: "string" }, out: { type: "string" } },
  async run(ctx, v) {
    const { createCsr } = await import("../../x509/csr.js");
    if (typeof v.subject !== "string") throw new UsageError("Missing --subject (e.g. 'CN=api.example.com')");
    const key = await ctx.key(v.key);
    const request = await createCsr(key, { subject: v.subject, ...(v.san ? { sans: v.san as string[] } : {}), ...(typeof v.alg === "string" ? { alg: v.alg } : {}) });
    const pem = request.toString("pem");
    if (typeof v.out === "string") writeFileSync(v.out, `${pem}\n`);
    ctx.print({ subject: request.subject, kid: key.kid, pem }, () => (typeof v.out === "string" ? `Wrote ${v.out}` : pem));
  },
};
