/**
 * What every command gets: the global options, a way to open the token (PIN from HSMKEY_PIN,
 * --pin-file / HSMKEY_PIN_FILE, or a prompt that does not echo), key lookup, input and output.
 */
import { readFileSync } from "node:fs";
import { openHsm, type Hsm } from "../hsm.js";
import type { HsmOptions } from "../options.js";
import { KeyNotFoundError, LoginError } from "../errors.js";
import type { HsmKey } from "../jose/hsm-key.js";
import { isPkcs11Uri } from "../pkcs11/uri.js";
import { UsageError } from "./errors.js";
import { promptPin } from "./pin.js";
import type { OptionSpec, Values } from "./command.js";
import { fields, table, type Row } from "./output.js";

export const GLOBAL_OPTIONS: OptionSpec = {
  module: { type: "string" },
  token: { type: "string" },
  serial: { type: "string" },
  slot: { type: "string" },
  uri: { type: "string" },
  "pin-file": { type: "string" },
  home: { type: "string" },
  json: { type: "boolean" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export const GLOBAL_HELP = [
  "Token selection (default: HSMKEY_* environment, else the embedded SoftHSM development token):",
  "  --module PATH      PKCS#11 module (HSMKEY_MODULE)",
  "  --token LABEL      token label (HSMKEY_TOKEN)",
  "  --serial SERIAL    token serial number (HSMKEY_SERIAL)",
  "  --slot ID          slot id (HSMKEY_SLOT)",
  "  --uri pkcs11:...   token (and module-path) as a PKCS#11 URI",
  "  --home DIR         embedded token directory (HSMKEY_HOME, default ./.hsmkey)",
  "PIN: HSMKEY_PIN, --pin-file FILE (or HSMKEY_PIN_FILE), else a prompt when stdin is a terminal.",
  "Output: --json for machine-readable output; --debug prints stacks on errors.",
];

export class Context {
  readonly json: boolean;
  readonly debug: boolean;
  readonly global: Values;
  #hsm: Hsm | undefined;

  constructor(global: Values) {
    this.global = global;
    this.json = global.json === true;
    this.debug = global.debug === true;
  }

  /** Options for openHsm from the command line (the environment fills the rest). */
  hsmOptions(): HsmOptions {
    const g = this.global;
    const o: HsmOptions = {};
    if (typeof g.module === "string") o.module = g.module;
    if (typeof g.token === "string") o.token = g.token;
    if (typeof g.serial === "string") o.serial = g.serial;
    if (typeof g.slot === "string") {
      if (!/^\d+$/.test(g.slot)) throw new UsageError(`--slot must be a decimal slot id, got '${g.slot}'`);
      o.slotId = Number(g.slot);
    }
    if (typeof g.uri === "string") o.uri = g.uri;
    if (typeof g["pin-file"] === "string") o.pinFile = g["pin-file"];
    if (typeof g.home === "string") o.home = g.home;
    return o;
  }

  async hsm(): Promise<Hsm> {
    if (this.#hsm) return this.#hsm;
    const options = this.hsmOptions();
    try {
      this.#hsm = await openHsm(options);
    } catch (error) {
      // No PIN anywhere: ask for it on the terminal (never from the command line).
      if (!(error instanceof LoginError) || error.ckr !== undefined || !process.stdin.isTTY) throw error;
      const pin = await promptPin("PIN: ");
      this.#hsm = await openHsm({ ...options, pin });
    }
    return this.#hsm;
  }

  async close(): Promise<void> {
    await this.#hsm?.close();
    this.#hsm = undefined;
  }

  /**
   * The key a reference names: a pkcs11: URI, `id:HEX`, a label, or a kid (RFC 7638 thumbprint
   * or label) of a key on the token.
   */
  async key(ref: unknown, alg?: string): Promise<HsmKey> {
    if (typeof ref !== "string" || ref === "") throw new UsageError("Missing --key (a label, kid, id:HEX or pkcs11: URI)");
    const hsm = await this.hsm();
    const options = alg ? { alg } : {};
    if (isPkcs11Uri(ref as unknown)) return hsm.getKey(ref, options);
    if (ref.startsWith("id:")) return hsm.getKey({ id: ref.slice(3) }, options);
    try {
      return await hsm.getKey({ label: ref }, options);
    } catch (error) {
      if (!(error instanceof KeyNotFoundError) || error.code !== "ERR_HSM_KEY_NOT_FOUND") throw error;
    }
    const byKid = (await hsm.listKeys()).filter((k) => k.kid === ref);
    if (byKid.length === 1) return alg ? byKid[0]!.as(alg) : byKid[0]!;
    if (byKid.length > 1) throw new KeyNotFoundError(`More than one key has kid '${ref}'`, "ERR_HSM_KEY_AMBIGUOUS");
    throw new KeyNotFoundError(`No key with label or kid '${ref}' on token '${hsm.info.label}'`);
  }

  /** Text from an argument: `@file`, `-` (stdin), or the literal value. */
  text(value: string): string {
    if (value === "-") return readFileSync(0, "utf8");
    if (value.startsWith("@")) return readFile(value.slice(1));
    return value;
  }

  out(text: string): void {
    process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
  }

  /** JSON with --json, else the human form. */
  print(data: unknown, human: () => string): void {
    this.out(this.json ? JSON.stringify(data, null, 2) : human());
  }

  printTable(rows: Row[], columns?: string[]): void {
    this.print(rows, () => table(rows, columns));
  }

  printFields(record: Row): void {
    this.print(record, () => fields(record));
  }
}

export function readFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}
