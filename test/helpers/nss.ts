/**
 * Test fixture: a fresh NSS softoken database (libsoftokn3.so) in a temporary directory, created with
 * `certutil -N`. The database password is the token PIN; it goes to certutil through a 0600 file,
 * never on a command line.
 *
 * module.ts initialises a library once per process with one set of libraryParameters, so a test
 * process uses one NSS database.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { HsmOptions } from "../../src/options.js";

const CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/libsoftokn3.so",
  "/usr/lib/aarch64-linux-gnu/libsoftokn3.so",
  "/usr/lib64/libsoftokn3.so",
  "/usr/lib/libsoftokn3.so",
  "/usr/lib/x86_64-linux-gnu/nss/libsoftokn3.so",
  "/usr/lib64/nss/libsoftokn3.so",
];

/** Path of NSS softoken on this machine, or undefined. */
export function findSoftokn(): string | undefined {
  const fromEnv = process.env.HSMKEY_NSS_MODULE;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  for (const candidate of CANDIDATES) if (existsSync(candidate)) return candidate;
  try {
    const multiarch = execFileSync("gcc", ["-print-multiarch"], { encoding: "utf8" }).trim();
    const p = `/usr/lib/${multiarch}/libsoftokn3.so`;
    if (multiarch && existsSync(p)) return p;
  } catch {
    // no gcc: the candidates were all we had
  }
  return undefined;
}

export const NSS_TOKEN_LABEL = "NSS Certificate DB";

export interface NssDatabase {
  dir: string;
  pin: string;
  /** Options for openHsm(). */
  options: HsmOptions & { module: string; libraryParameters: string; token: string; pin: string };
  remove(): void;
}

/** Create an empty NSS database protected by a random password (the token PIN). */
export function createNssDatabase(): NssDatabase {
  const module = findSoftokn();
  if (!module) throw new Error("NSS softoken (libsoftokn3.so) not found; install libnss3");
  const dir = mkdtempSync(join(tmpdir(), "hsmkey-nss-"));
  const db = join(dir, "nssdb");
  const pin = randomBytes(12).toString("hex");
  const pwfile = join(dir, "password");
  try {
    execFileSync("mkdir", ["-m", "700", db]);
    writeFileSync(pwfile, `${pin}\n`, { mode: 0o600 });
    execFileSync("certutil", ["-N", "-d", `sql:${db}`, "-f", pwfile], { stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`certutil -N failed: ${(error as { stderr?: Buffer }).stderr?.toString().trim() ?? (error as Error).message}`);
  } finally {
    rmSync(pwfile, { force: true });
  }
  return {
    dir,
    pin,
    options: {
      module,
      libraryParameters: `configdir='sql:${db}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=`,
      token: NSS_TOKEN_LABEL,
      pin,
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
