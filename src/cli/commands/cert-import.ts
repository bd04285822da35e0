import { readFileSync } from "node:fs";
import type { Command } from "../command.js";
import { UsageError } from "../errors.js";

export const certImport: Command = {
  path: ["cert", "import"],
  summary: "Store a certificate (PEM or DER file) on the token for the key it certifies",
  usage: "FILE|- --key K",
  help: ["The certificate's public key must be the key's."],
  options: { key: { type: "string" } },
  maxPositionals: 1,
  async run(ctx, v, positionals) {
    const { parseCertificate, storeCertificate } = await import("../../x509/store.js");
    const source = positionals[0];
    if (!source) throw new UsageError("Missing the certificate file (PEM or DER; - for stdin)");
    const bytes = source === "-" ? readFileSync(0) : readBytes(source);
    const text = bytes.toString("latin1");
    const cert = parseCertificate(text.includes("-----BEGIN") ? text : new Uint8Array(bytes));
    const hsm = await ctx.hsm();
    const key = await ctx.key(v.key);
    const replaced = await storeCertificate(hsm, key, cert);
    ctx.printFields({ stored: cert.subject, issuer: cert.issuer, serialNumber: cert.serialNumber, key: key.kid, replaced });
  },
};

function readBytes(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new UsageError(`Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
