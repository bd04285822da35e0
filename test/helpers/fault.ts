/**
 * The fault-injecting PKCS#11 module (test/fault/faulty.c): built with the machine's gcc once per
 * source version (cached in the temp directory by the source's mtime and size), and driven through
 * a control file the module re-reads whenever it changes.
 *
 * Call `faultyModule()` BEFORE the module is opened: it sets FAULTY_CONTROL and FAULTY_COUNTS in
 * process.env, which the C code reads with getenv().
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const SOURCE = resolve(dirname(fileURLToPath(import.meta.url)), "../fault/faulty.c");

/** CK_RV values the tests inject. */
export const CKR = {
  GENERAL_ERROR: 0x05,
  DEVICE_ERROR: 0x30,
  DEVICE_REMOVED: 0x32,
  PIN_INCORRECT: 0xa0,
  PIN_LOCKED: 0xa4,
  SESSION_CLOSED: 0xb0,
  SESSION_HANDLE_INVALID: 0xb3,
  TOKEN_NOT_PRESENT: 0xe0,
  USER_NOT_LOGGED_IN: 0x101,
} as const;

export interface Fault {
  /** PKCS#11 function to fail, e.g. "C_Sign". */
  function?: string;
  /** CK_RV to return. */
  rv?: number;
  /** The Nth call of `function` after this configuration fails (1 = the next one). */
  nth?: number;
  /** How many consecutive calls fail from the Nth on (default 1). */
  count?: number;
  /** Every Kth call fails. */
  every?: number;
  /** Each call fails with this probability. */
  probability?: number;
  /** PKCS#11 function to delay. */
  delayFunction?: string;
  delayMs?: number;
}

export interface FaultyModule {
  /** Path of libfaulty.so. */
  path: string;
  /** Directory holding the control and trace files. */
  dir: string;
  /**
   * Replace the fault configuration (atomically; the module sees it at its next call). Up to four
   * rules at once, each counting the calls of its own function.
   */
  setFault(fault: Fault | Fault[]): void;
  /** No faults. */
  clearFault(): void;
  /** Forget the trace so far. */
  resetTrace(): void;
  /** How many times `fn` was called since the last resetTrace (faulted calls included). */
  calls(fn: string): number;
  /** How many faults were injected into `fn` since the last resetTrace. */
  faults(fn: string): number;
  /** Remove the control directory. */
  dispose(): void;
}

let built: string | undefined;

/** Build libfaulty.so (or reuse the build of this very source) and return its path. */
export function buildFaulty(): string {
  if (built && existsSync(built)) return built;
  const st = statSync(SOURCE);
  const cacheDir = join(tmpdir(), "hsmkey-faulty");
  mkdirSync(cacheDir, { recursive: true });
  const out = join(cacheDir, `libfaulty-${Math.floor(st.mtimeMs)}-${st.size}.so`);
  if (!existsSync(out)) {
    const partial = `${out}.${process.pid}.tmp`;
    execFileSync("gcc", ["-shared", "-fPIC", "-O2", "-Wall", "-o", partial, SOURCE, "-ldl", "-lpthread"], { stdio: ["ignore", "ignore", "pipe"] });
    renameSync(partial, out); // atomic: concurrent test processes never load a half-written file
  }
  built = out;
  return out;
}

/** Build the module and point it at a fresh control directory for this process. */
export function faultyModule(): FaultyModule {
  const path = buildFaulty();
  const dir = mkdtempSync(join(tmpdir(), "hsmkey-fault-"));
  const control = join(dir, "control");
  const trace = join(dir, "trace");
  process.env.FAULTY_CONTROL = control;
  process.env.FAULTY_COUNTS = trace;
  let serial = 0;
  const write = (text: string) => {
    const partial = `${control}.${serial++}`;
    writeFileSync(partial, text);
    renameSync(partial, control);
  };
  const lines = () => (existsSync(trace) ? readFileSync(trace, "utf8").split("\n") : []);
  write("");
  return {
    path,
    dir,
    setFault(faults) {
      const rules = Array.isArray(faults) ? faults : [faults];
      if (rules.length > 4) throw new RangeError("faulty.c has four rules");
      const out: string[] = [];
      rules.forEach((fault, i) => {
        const n = i === 0 ? "" : `.${i}`;
        if (fault.function !== undefined) out.push(`fail_function${n}=${fault.function}`);
        if (fault.rv !== undefined) out.push(`fail_rv${n}=0x${fault.rv.toString(16)}`);
        if (fault.nth !== undefined) out.push(`fail_nth${n}=${fault.nth}`);
        if (fault.count !== undefined) out.push(`fail_count${n}=${fault.count}`);
        if (fault.every !== undefined) out.push(`fail_every${n}=${fault.every}`);
        if (fault.probability !== undefined) out.push(`fail_probability${n}=${fault.probability}`);
        if (fault.delayFunction !== undefined) out.push(`delay_function=${fault.delayFunction}`);
        if (fault.delayMs !== undefined) out.push(`delay_ms=${fault.delayMs}`);
      });
      write(out.join("\n") + "\n");
    },
    clearFault() {
      write("");
    },
    resetTrace() {
      writeFileSync(trace, "");
    },
    calls(fn) {
      return lines().filter((l) => l === fn).length;
    },
    faults(fn) {
      return lines().filter((l) => l.startsWith(`FAULT ${fn} `)).length;
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
