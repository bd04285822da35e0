/** How a key is shown: one row for `keys list`, more for `keys show`. */
import type { Hsm } from "../hsm.js";
import type { HsmKey } from "../jose/hsm-key.js";

export function keyType(key: HsmKey): string {
  const info = (key.objects.privateKey ?? key.objects.secretKey ?? key.objects.publicKey)!.info;
  switch (info.kind) {
    case "RSA":
      return `RSA-${info.modulusBits}`;
    case "EC":
    case "OKP":
      return `${info.kind} ${info.curve}`;
    default:
      return `${info.kind}-${(info.length ?? 0) * 8}`;
  }
}

export function hexId(key: HsmKey): string | undefined {
  return key.id?.length ? Buffer.from(key.id).toString("hex") : undefined;
}

/**
 * The row of a key. `withCertificate` looks the stored certificate up (loading the X.509 code only
 * then: commands that cannot meet a certificate start faster without it).
 */
export async function keyRow(hsm: Hsm, key: HsmKey, withCertificate = true): Promise<Record<string, unknown>> {
  const cert = key.kty === "oct" || !withCertificate ? undefined : await (await import("../x509/store.js")).getCertificate(hsm, key);
  const parts = key.objects;
  return {
    label: key.label,
    id: hexId(key),
    kid: key.kid,
    type: keyType(key),
    alg: key.alg,
    algorithms: [...key.algorithms],
    objects: [parts.privateKey && "private", parts.publicKey && "public", parts.secretKey && "secret"].filter(Boolean),
    certificate: cert ? cert.subject : undefined,
  };
}
