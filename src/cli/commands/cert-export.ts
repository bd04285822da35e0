import { KeyNotFoundError } from "../../errors.js";
import type { Command } from "../command.js";

export const certExport: Command = {
  path: ["cert", "export"],
  summary: "Print the certificate stored for a key (PEM)",
  usage: "--key K",
  options: { key: { type: "string" } },
  async run(ctx, v) {
    const { getCertificate } = await import("../../x509/store.js");
    const { x5tS256Of } = await import("../../x509/thumbprints.js");
    const hsm = await ctx.hsm();
    const key = await ctx.key(v.key);
    const cert = await getCertificate(hsm, key);
    if (!cert) throw new KeyNotFoundError(`No certificate stored for key '${key.label ?? key.kid}'`);
    const pem = cert.toString("pem");
    ctx.print({ subject: cert.subject, issuer: cert.issuer, serialNumber: cert.serialNumber, "x5t#S256": x5tS256Of(cert), pem }, () => pem);
  },
};
