/** Subject names and subjectAltName entries from the short strings people type. */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { InvalidInputError } from "../errors.js";

/** A SAN: `dns:example.com`, `ip:10.0.0.1`, `email:a@b`, `uri:https://...`, or a bare DNS name / IP. */
export type SanInput = string | { type: "dns" | "ip" | "email" | "url"; value: string };

const PREFIXES: Record<string, "dns" | "ip" | "email" | "url"> = { dns: "dns", ip: "ip", email: "email", uri: "url", url: "url" };

export function parseSan(input: SanInput): { type: "dns" | "ip" | "email" | "url"; value: string } {
  if (typeof input !== "string") return input;
  const m = /^([a-z]+):(.+)$/i.exec(input);
  const type = m ? PREFIXES[m[1]!.toLowerCase()] : undefined;
  if (m && type) return { type, value: m[2]! };
  if (/^[\d.]+$/.test(input) || input.includes(":")) return { type: "ip", value: input };
  if (input.includes("@")) return { type: "email", value: input };
  if (/^[a-z0-9*]([a-z0-9.-]*[a-z0-9])?$/i.test(input)) return { type: "dns", value: input };
  throw new InvalidInputError(`Cannot read subjectAltName '${input}': use dns:, ip:, email: or uri:`);
}

export function sanExtension(sans: readonly SanInput[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension(sans.map(parseSan));
}

/** Check a distinguished name string ("CN=api, O=Example") early, with an error naming it. */
export function parseName(subject: string): x509.Name {
  if (!subject.trim()) throw new InvalidInputError("The subject is empty: give a distinguished name such as 'CN=example'");
  try {
    return new x509.Name(subject);
  } catch (error) {
    throw new InvalidInputError(`Cannot read subject '${subject}': ${(error as Error).message}`, "ERR_HSM_INVALID_INPUT", { cause: error });
  }
}
