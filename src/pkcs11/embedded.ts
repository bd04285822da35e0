/**
 * The embedded development token: a SoftHSM2 token that hsmkey creates on first use in its own
 * directory, so examples and tests run without any HSM setup.
 *
 * This is NOT an HSM. Its keys are software keys in files under the home directory, protected by a
 * PIN stored in a file right beside them. Use it for development and tests only.
 *
 * Layout of the home directory (mode 0700):
 *   softhsm2.conf   SoftHSM configuration (token directory = home/tokens)
 *   tokens/         SoftHSM token store
 *   user.pin        user PIN (mode 0600)
 *   so.pin          security officer PIN (mode 0600)
 *   README.txt      the warning above
 *
 * SoftHSM reads SOFTHSM2_CONF once, at C_Initialize. ensureEmbeddedToken() sets
 * `process.env.SOFTHSM2_CONF` to the embedded configuration and leaves it set (later users of the
 * module must see the same token directory). Consequently the embedded token must be opened before
 * any other SoftHSM token in the process, and a process cannot use the embedded token and another
 * SoftHSM configuration at the same time.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type * as pkcs11 from "pkcs11js";
import { HsmError, InvalidInputError, ModuleLoadError } from "../errors.js";
import { tokenError } from "./ckr.js";
import { acquireModule, loadedModules, retryOnFreshModule, type LoadedModule } from "./module.js";
import { isInitialized, listTokens, tokenInfo, type SlotMatch } from "./slot.js";
import { sleepSync } from "./sleep.js";

/** Where SoftHSM2's PKCS#11 module is commonly installed (Debian/Ubuntu, Fedora, Alpine, macOS, FreeBSD). */
export const SOFTHSM2_MODULE_CANDIDATES: string[] = [
  "/usr/lib/softhsm/libsofthsm2.so",
  "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib64/pkcs11/libsofthsm2.so",
  "/usr/lib/pkcs11/libsofthsm2.so",
  "/usr/lib64/softhsm/libsofthsm2.so",
  "/usr/local/lib/softhsm/libsofthsm2.so",
  "/opt/homebrew/lib/softhsm/libsofthsm2.so",
  "/usr/local/opt/softhsm/lib/softhsm/libsofthsm2.so",
];

/** The first SoftHSM2 module found at a known path, or undefined. */
export function findSoftHsmModule(): string | undefined {
  return SOFTHSM2_MODULE_CANDIDATES.find((path) => existsSync(path));
}

export interface EmbeddedToken {
  /** The home directory holding configuration, token store and PIN files. */
  home: string;
  /** Path of the SoftHSM2 module. */
  module: string;
  /** Token label. */
  token: string;
  /** User PIN of the token. */
  pin: string;
  /** Path of the SoftHSM2 configuration file (also set as process.env.SOFTHSM2_CONF). */
  configPath: string;
  /** True when this call created (initialised) the token. */
  created: boolean;
}

export interface EmbeddedTokenOptions {
  /** Home directory; default embeddedHome(). */
  home?: string;
  /** Token label (at most 32 bytes of UTF-8); default "hsmkey-dev". */
  label?: string;
  /** SoftHSM2 module path; default the first of SOFTHSM2_MODULE_CANDIDATES that exists. */
  module?: string;
}

export const DEFAULT_EMBEDDED_LABEL = "hsmkey-dev";

/**
 * The embedded token's home directory: `$HSMKEY_HOME` when set (and non-empty), else `.hsmkey`
 * in the current working directory.
 */
export function embeddedHome(): string {
  const env = process.env.HSMKEY_HOME;
  return resolve(env ? env : join(process.cwd(), ".hsmkey"));
}

const CKF_RW_SESSION = 2;
const CKF_SERIAL_SESSION = 4;
const CKU_SO = 0;

const README = `This directory holds hsmkey's embedded DEVELOPMENT token (SoftHSM2).

It is not an HSM. Keys in tokens/ are software keys stored in files, protected only by the
PIN in user.pin right beside them: anyone who can read this directory can use or copy them.
Do not use this token in production, and do not put production keys in it.

To start over, delete this directory; hsmkey creates a new token on next use.
`;

/**
 * Create (on first use) or find the embedded development token and return how to open it.
 * Safe to call repeatedly; the second call finds the token created by the first.
 * @throws ModuleLoadError when SoftHSM2 is not installed.
 */
export function ensureEmbeddedToken(options: EmbeddedTokenOptions = {}): EmbeddedToken {
  const label = options.label ?? DEFAULT_EMBEDDED_LABEL;
  const labelBytes = Buffer.byteLength(label, "utf8");
  if (labelBytes === 0 || labelBytes > 32) {
    throw new InvalidInputError(`Embedded token label must be 1 to 32 bytes of UTF-8, got ${labelBytes} bytes`);
  }
  const module = options.module ?? findSoftHsmModule();
  if (!module || !existsSync(module)) {
    throw new ModuleLoadError(
      (module ? `SoftHSM2 module not found at ${module}. ` : "SoftHSM2 is not installed (no libsofthsm2.so at a known path). ") +
        "The embedded development token needs it: install it with `apt-get install softhsm2` (Debian/Ubuntu), " +
        "`dnf install softhsm` (Fedora/RHEL) or `brew install softhsm` (macOS). " +
        "Or set HSMKEY_MODULE to the path of another PKCS#11 module to use a real token instead.",
    );
  }

  const home = resolve(options.home ?? embeddedHome());
  makePrivateDir(home);
  makePrivateDir(join(home, "tokens"));
  const configPath = join(home, "softhsm2.conf");
  if (!existsSync(configPath)) {
    writeFileSync(
      configPath,
      `# hsmkey embedded development token (SoftHSM2)\ndirectories.tokendir = ${join(home, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n`,
      { mode: 0o600 },
    );
  }

  // SoftHSM reads SOFTHSM2_CONF only at C_Initialize: if the module is already initialised in this
  // process with another configuration, it cannot see (and must not create) the embedded token.
  const previousConf = process.env.SOFTHSM2_CONF;
  const real = realpathSync(module);
  if (loadedModules().some((m) => m.path === real) && previousConf !== configPath) {
    throw new HsmError(
      `SoftHSM2 (${module}) is already in use in this process with configuration ${previousConf ?? "(default)"}; ` +
        "open the embedded token before any other SoftHSM token, or close the other one first",
    );
  }
  process.env.SOFTHSM2_CONF = configPath;

  // Two processes starting at once on a new home would each create a token: take turns. The lock
  // is held from before C_Initialize (SoftHSM reads the token directory then) to after creation.
  const unlock = lockHome(home);
  let loaded: LoadedModule;
  try {
    loaded = acquireModule({ path: module });
  } catch (error) {
    unlock();
    throw error;
  }
  try {
    const tokens = settledTokens(loaded, join(home, "tokens"));
    const pins = homePins(home, tokens.length > 0);
    if (tokens.some((t) => t.info.label === label)) return { home, module, token: label, pin: pins.user, configPath, created: false };
    const readme = join(home, "README.txt");
    if (!existsSync(readme)) writeFileSync(readme, README, { mode: 0o644 });
    initToken(loaded, label, pins.so, pins.user);
    return { home, module, token: label, pin: pins.user, configPath, created: true };
  } finally {
    loaded.release();
    unlock();
  }
}

/**
 * SoftHSM's initialised tokens, once its view agrees with the token store on disk: one directory
 * per initialised token. A token whose file another process was rewriting at C_Initialize is
 * missing from the view (see retryOnFreshModule); creating a token then would make a second one
 * with the same label. So a view that stays short of the disk is an error, never a reason to create.
 */
function settledTokens(loaded: LoadedModule, tokenDir: string): SlotMatch[] {
  const onDisk = () => readdirSync(tokenDir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).length;
  return retryOnFreshModule(
    loaded,
    () => {
      const tokens = listTokens(loaded);
      const stored = onDisk();
      if (tokens.length < stored) throw new StoreMisreadError(tokens.length, stored, tokenDir);
      return tokens;
    },
    (error) => error instanceof StoreMisreadError,
  );
}

class StoreMisreadError extends HsmError {
  override name = "HsmError";
  constructor(listed: number, onDisk: number, tokenDir: string) {
    super(
      `SoftHSM lists ${listed} of the ${onDisk} tokens in ${tokenDir}: another process may be writing them, ` +
        "or a token's files are damaged; try again",
    );
  }
}

/**
 * The home's PINs, shared by every token in it. They are written before the first token is
 * initialised, so no token exists whose PIN was lost, and never replaced while a token exists.
 */
function homePins(home: string, tokensExist: boolean): { user: string; so: string } {
  const userPath = join(home, "user.pin");
  const soPath = join(home, "so.pin");
  if (existsSync(userPath) && existsSync(soPath)) {
    return { user: readFileSync(userPath, "utf8").trim(), so: readFileSync(soPath, "utf8").trim() };
  }
  if (tokensExist) {
    throw new HsmError(
      `The embedded token store in ${home} exists but its PIN files (user.pin, so.pin) are missing; ` +
        `delete ${join(home, "tokens")} to start over`,
    );
  }
  const pins = { user: randomPin(), so: randomPin() };
  writeSecret(userPath, pins.user);
  writeSecret(soPath, pins.so);
  return pins;
}

const LOCK_STALE_MS = 60_000;
const LOCK_WAIT_MS = 30_000;

/** An exclusive lock file in `home`; returns its release. A lock older than a minute is stale. */
function lockHome(home: string): () => void {
  const path = join(home, ".init.lock");
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    let age = 0;
    try {
      age = Date.now() - statSync(path).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    if (age > LOCK_STALE_MS) {
      rmSync(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new HsmError(`Timed out waiting for ${path}: another process is creating the embedded token`);
    sleepSync(25);
  }
}

function makePrivateDir(dir: string): void {
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Tighten only what we created: an existing directory chosen by the user keeps its mode.
  if (created !== undefined) chmodSync(dir, 0o700);
}

function randomPin(): string {
  return randomBytes(8).toString("hex"); // 16 hex characters
}

function writeSecret(path: string, value: string): void {
  // Remove any old file so the new one is created with mode 0600 from the start.
  if (existsSync(path)) unlinkSync(path);
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(path, 0o600);
}

function initToken(loaded: LoadedModule, label: string, soPin: string, userPin: string): void {
  const lib = loaded.lib;
  const free = lib.C_GetSlotList(true).find((slot) => !isInitialized(tokenInfo(lib, slot)));
  if (free === undefined) throw new HsmError("SoftHSM2 offers no uninitialised token slot for the embedded token");
  // C_InitToken reads exactly 32 bytes of label: pkcs11js passes the string as is, so pad it here.
  const padded = label + " ".repeat(32 - Buffer.byteLength(label, "utf8"));
  try {
    lib.C_InitToken(free, soPin, padded);
  } catch (error) {
    throw tokenError(error, `C_InitToken of embedded token '${label}'`);
  }
  // SoftHSM gives an initialised token a new slot id (derived from its serial): look it up again.
  const slot = listTokens(loaded).find((t) => t.info.label === label)?.slot;
  if (slot === undefined) throw new HsmError(`Embedded token '${label}' not found after C_InitToken`);
  let session: pkcs11.Handle;
  try {
    session = lib.C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
  } catch (error) {
    throw tokenError(error, `C_OpenSession on embedded token '${label}'`);
  }
  try {
    lib.C_Login(session, CKU_SO, soPin);
    try {
      lib.C_InitPIN(session, userPin);
    } finally {
      try {
        lib.C_Logout(session);
      } catch {
        // Closing the session below logs out as well.
      }
    }
  } catch (error) {
    throw tokenError(error, `Setting the user PIN of embedded token '${label}'`);
  } finally {
    try {
      lib.C_CloseSession(session);
    } catch {
      // Session already gone: nothing to clean up.
    }
  }
}
