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
      const init: pkcs11.InitializationOptions = { flags: CKF_OS_LOCKING_OK };
      if (options.libraryParameters !== undefined) init.libraryParameters = options.libraryParameters;
      try {
        entry.module.lib.C_Initialize(init);
      } catch (error) {
        if (ckrOf(error) !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") throw error;
        entry.ownsInit = false;
      }
    } catch (error) {
      safely(() => entry!.module.close());
      throw new ModuleLoadError(`C_Initialize of PKCS#11 module ${options.path} failed: ${ckrOf(error) ?? (error as Error).message}`, {
        cause: error,
        ckr: ckrOf(error),
      });
    }
    loaded.set(path, entry);
  }
  entry.users++;
  return handleFor(entry);
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
  };
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
