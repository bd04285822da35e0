import type { NamedCurve } from "../../pkcs11/curves.js";
import type { Command } from "../command.js";
import { UsageError } from "../errors.js";
import { keyRow } from "../key-info.js";

export const keysGenerate: Command = {
  path: ["keys", "generate"],
  summary: "Generate a persistent, non-extractable key on the token",
  usage: "--alg ALG [--label L] [--id HEX] [--use sig|enc] [--bits N] [--curve C]",
  help: [
    "--alg ALG     JOSE algorithm the key is for (RS256, PS256, ES256, ES384, ES512, EdDSA, HS256, RSA-OAEP, ECDH-ES, A256KW, A256GCM...)",
    "--label L     CKA_LABEL (default hsmkey-<id>)",
    "--id HEX      CKA_ID (default 16 random bytes)",
    "--use sig|enc restrict a key pair to signing or encryption",
    "--bits N      RSA modulus length (default 2048)",
    "--curve C     curve for EdDSA (Ed25519, Ed448) or ECDH-ES (P-256, P-384, P-521)",
    "The key's kid is the RFC 7638 thumbprint of its public key (the label for secret keys).",
  ],
  options: { alg: { type: "string" }, label: { type: "string" }, id: { type: "string" }, use: { type: "string" }, bits: { type: "string" }, curve: { type: "string" } },
  async run(ctx, v) {
    if (typeof v.alg !== "string") throw new UsageError("Missing --alg (e.g. ES256, RS256, EdDSA, HS256)");
    if (v.use !== undefined && v.use !== "sig" && v.use !== "enc") throw new UsageError(`--use must be sig or enc, got '${v.use}'`);
    if (v.bits !== undefined && !/^\d+$/.test(String(v.bits))) throw new UsageError(`--bits must be a number, got '${v.bits}'`);
    const hsm = await ctx.hsm();
    const key = await hsm.generateKey(v.alg, {
      ...(typeof v.label === "string" ? { label: v.label } : {}),
      ...(typeof v.id === "string" ? { id: v.id } : {}),
      ...(v.use ? { use: v.use as "sig" | "enc" } : {}),
      ...(v.bits ? { modulusLength: Number(v.bits) } : {}),
      ...(typeof v.curve === "string" ? { curve: v.curve as NamedCurve } : {}),
    });
    const row = await keyRow(hsm, key, false); // a new key has no certificate
    ctx.printFields(row);
  },
};
