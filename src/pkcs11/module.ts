/**
 * Loaded PKCS#11 modules, shared per process and reference-counted.
 *
 * Invariant: a library file is loaded and C_Initialize'd at most once per process (two dlopen()s of
 * one file share its state, so a second C_Initialize/C_Finalize would act on the first user's).
 * C_Finalize runs when the last user of the main thread releases it, and only if that thread
 * initialised it: worker threads share the library and never finalize it under the others. C_Initialize always passes CKF_OS_LOCKING_OK:
 * without it SoftHSM corrupts its heap as soon as two sessions run async calls at once.
 */
import { existsSync, realpathSync } from "node:fs";
import { isMainThread } from "node:worker_threads";
import * as graphene from "graphene-pk11";
import type * as pkcs11 from "pkcs11js";
import { ModuleLoadError } from "../errors.js";
import { ckrOf } from "./ckr.js";
import { sleepSync } from "./sleep.js";

const CKF_OS_LOCKING_OK = 2;

export interface ModuleOptions {
  /** Path of the PKCS#11 shared library. */
  path: string;
  /** NSS-style init string passed as pReserved to C_Initialize (e.g. NSS softoken's configdir). */
  libraryParameters?: string;
}

export interface LoadedModule {
  readonly path: string;
  readonly libraryParameters: string | undefined;
  readonly graphene: graphene.Module;
  readonly lib: pkcs11.PKCS11;
  /** Release this user's reference; the last release finalizes the module. */
  release(): void;
  /** True when this is the module's only user and this thread initialised it: see reinitialize(). */
  readonly reinitializable: boolean;
  /**
   * C_Finalize then C_Initialize again, so the module reads its slots and tokens afresh; only when
   * `reinitializable`. Throws ModuleLoadError when the new C_Initialize fails.
   */
  reinitialize(): void;
}

interface Entry {
  path: string;
  libraryParameters: string | undefined;
  module: graphene.Module;
  users: number;
  /** False when C_Initialize said CKR_CRYPTOKI_ALREADY_INITIALIZED: another thread of this process owns the library. */
  ownsInit: boolean;
}

const loaded = new Map<string, Entry>();

/** Load and initialise a module (or take another reference to an already loaded one). */
export function acquireModule(options: ModuleOptions): LoadedModule {
  if (!options.path) throw new ModuleLoadError("No PKCS#11 module path given (option `module` or HSMKEY_MODULE)");
  if (!existsSync(options.path)) throw new ModuleLoadError(`PKCS#11 module not found: ${options.path}`);
  const path = realpathSync(options.path);
  let entry = loaded.get(path);
  if (entry && entry.libraryParameters !== options.libraryParameters) {
    throw new ModuleLoadError(
      `PKCS#11 module ${options.path} is already initialised in this process with other libraryParameters; ` +
        "close the Hsm that uses it first",
    );
  }
  if (!entry) {
    entry = { path, libraryParameters: options.libraryParameters, module: load(options.path), users: 0, ownsInit: true };
    try {
      initialize(entry);
    } catch (error) {
      if (ckrOf(error) === "CKR_CRYPTOKI_ALREADY_INITIALIZED") {
        entry.ownsInit = false;
      } else {
        safely(() => entry!.module.close());
        throw initFailed(options.path, error);
      }
    }
    loaded.set(path, entry);
  }
  entry.users++;
  return handleFor(entry);
}

function initialize(entry: Entry): void {
  const init: pkcs11.InitializationOptions = { flags: CKF_OS_LOCKING_OK };
  if (entry.libraryParameters !== undefined) init.libraryParameters = entry.libraryParameters;
  entry.module.lib.C_Initialize(init);
}

function initFailed(path: string, error: unknown): ModuleLoadError {
  return new ModuleLoadError(`C_Initialize of PKCS#11 module ${path} failed: ${ckrOf(error) ?? (error as Error).message}`, {
    cause: error,
    ckr: ckrOf(error),
  });
}

function load(path: string): graphene.Module {
  try {
    return graphene.Module.load(path);
  } catch (error) {
    throw new ModuleLoadError(`${path} is not a loadable PKCS#11 module: ${(error as Error).message.split("\n")[0]}`, {
      cause: error,
    });
  }
}

function handleFor(entry: Entry): LoadedModule {
  let released = false;
  return {
    path: entry.path,
    libraryParameters: entry.libraryParameters,
    graphene: entry.module,
    lib: entry.module.lib,
    release() {
      if (released) return;
      released = true;
      if (--entry.users > 0) return;
      loaded.delete(entry.path);
      // The library is one per process, shared by its threads: only the main thread, and only when its
      // own C_Initialize did the initialising, finalizes it.
      if (entry.ownsInit && isMainThread) safely(() => entry.module.finalize());
      safely(() => entry.module.close());
    },
    get reinitializable() {
      return !released && entry.users === 1 && entry.ownsInit && isMainThread;
    },
    reinitialize() {
      if (!this.reinitializable) throw new Error("reinitialize() of a module that has other users");
      safely(() => entry.module.lib.C_Finalize());
      try {
        initialize(entry);
      } catch (error) {
        throw initFailed(entry.path, error);
      }
    },
  };
}

/** Pauses before each fresh C_Initialize in retryOnFreshModule: 150 ms in all. */
const FRESH_READ_PAUSES_MS = [10, 20, 40, 80];

/**
 * `attempt()`, tried again on a freshly initialised module while `stale(error)` says the failure
 * came from tokens read at a bad moment, and the module may be re-initialised.
 *
 * Why: a token store can be read while another process writes it. SoftHSM rewrites a token's file
 * on every C_Login, and reads its tokens once, at C_Initialize: a process initialising at that moment
 * misses the token (measured: 1 initialisation in 120 while four processes log in in a loop, and
 * more under heavier load), or reads it without its user PIN (C_Login then answers
 * CKR_USER_PIN_NOT_INITIALIZED), until its next C_Initialize.
 */
export function retryOnFreshModule<T>(module: LoadedModule, attempt: () => T, stale: (error: unknown) => boolean): T {
  for (const pause of FRESH_READ_PAUSES_MS) {
    try {
      return attempt();
    } catch (error) {
      if (!stale(error) || !module.reinitializable) throw error;
      sleepSync(pause);
      module.reinitialize();
    }
  }
  return attempt();
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // Best effort during teardown: the module may already be gone.
  }
}

/** How many users hold each loaded module (for tests and diagnostics). */
export function loadedModules(): { path: string; users: number }[] {
  return [...loaded.values()].map((e) => ({ path: e.path, users: e.users }));
}
