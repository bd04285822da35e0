import type { Command } from "../command.js";
import { UsageError } from "../errors.js";

export const certSelfSign: Command = {
  path: ["cert", "self-sign"],
  summary: "Create a self-signed certificate for a key and store it on the token",
  usage: "--key K --subject DN [--days N] [--san NAME]... [--serial HEX] [--alg ALG] [--no-store]",
  help: ["Stored as a CKO_CERTIFICATE with the key's CKA_ID and label (replacing one stored before)."],
  options: {
    key: { type: "string" }, subject: { type: "string" }, days: { type: "string" }, san: { type: "string", multiple: true },
    serial: { type: "string" }, alg: { type: "string" }, "no-store": { type: "boolean" },
  },
  async run(ctx, v) {
    const { createSelfSignedCertificate } = await import("../../x509/certificate.js");
    const { storeCertificate } = await import("../../x509/store.js");
    if (typeof v.subject !== "string") throw new UsageError("Missing --subject (e.g. 'CN=api.example.com')");
    if (v.days !== undefined && !/^\d+$/.test(String(v.days))) throw new UsageError(`--days must be a whole number, got '${v.days}'`);
    const hsm = await ctx.hsm();
    const key = await ctx.key(v.key);
    const cert = await createSelfSignedCertificate(key, {
      subject: v.subject,
      ...(v.days ? { days: Number(v.days) } : {}),
      ...(v.san ? { sans: v.san as string[] } : {}),
      ...(typeof v.serial === "string" ? { serialNumber: v.serial } : {}),
      ...(typeof v.alg === "string" ? { alg: v.alg } : {}),
    });
    if (v["no-store"] !== true) await storeCertificate(hsm, key, cert);
    const pem = cert.toString("pem");
    ctx.print({ subject: cert.subject, serialNumber: cert.serialNumber, notAfter: cert.notAfter.toISOString(), stored: v["no-store"] !== true, pem }, () => pem);
  },
};
