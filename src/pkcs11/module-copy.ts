/**
 * Private copies of a PKCS#11 library file, so that a token thread can load a module instance of
 * its own.
 *
 * dlopen() returns the instance already loaded for a file (matched by name, then by device and
 * inode), so every thread of a process shares one instance: its globals, its locks, its login. A
 * copy of the file is another file, so dlopen() loads a second, independent instance, to the
 * module as good as another process: it initialises, opens sessions and logs in on its own, and
 * finds keys by their identity (handles are per instance).
 *
 * Why: SoftHSM 2 serialises the use of private keys inside an instance (it decrypts the key's value
 * under one lock for every C_SignInit), so two threads on one instance sign ECDSA no faster than one
 * (measured 0.95x), while two instances in one process sign 1.7x faster on two cores.
 *
 * Which modules get copies (`threadModule` "auto"): those that say they are SoftHSM, where this was
 * measured and tested. A library that needs files beside it, or a shim that forwards to another
 * library (which would stay shared), is not copied unless asked for ("copy").
 */
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type * as pkcs11 from "pkcs11js";

/** How token threads reach the module: through the process's instance, or each through a copy. */
export type ThreadModule = "auto" | "shared" | "copy";

export const THREAD_MODULES: readonly ThreadModule[] = ["auto", "shared", "copy"];

/** The library's C_GetInfo manufacturer that "auto" copies. */
const COPIED_BY_DEFAULT = ["SoftHSM"];

/** Whether token threads of this library load copies of it. */
export function copiesModule(choice: ThreadModule, lib: pkcs11.PKCS11): boolean {
  if (choice !== "auto") return choice === "copy";
  try {
    return COPIED_BY_DEFAULT.includes(lib.C_GetInfo().manufacturerID.trim());
  } catch {
    return false;
  }
}

export interface ModuleCopy {
  /** The copy's path; remove() deletes it (a loaded copy stays mapped). */
  readonly file: string;
  /** The private directory holding it. */
  readonly dir: string;
}

/** Copy the library into a new directory only this user can read (mkdtemp makes it 0700). */
export function copyModule(path: string): ModuleCopy {
  const dir = mkdtempSync(join(tmpdir(), "hsmkey-module-"));
  try {
    const file = join(dir, basename(path));
    copyFileSync(path, file);
    chmodSync(file, 0o500);
    return { file, dir };
  } catch (error) {
    removeCopy({ dir });
    throw error;
  }
}

export function removeCopy(copy: Pick<ModuleCopy, "dir">): void {
  rmSync(copy.dir, { recursive: true, force: true });
}
