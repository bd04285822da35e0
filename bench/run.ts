/**
 * `npm run bench` — hsmkey under load, side by side with its references, in one run on one token.
 *
 *   npm run bench                 # full run on the embedded SoftHSM2 token (or the HSMKEY_* token)
 *   npm run bench -- --quick      # a few hundred ms per row: a smoke test, not a measurement
 *   npm run bench -- --only ES256 # only the workloads whose name matches
 *   options: --library dist (npm run bench builds and passes it: the compiled library; default: the
 *            sources, through tsx)  --out DIR  --module PATH --token LABEL --pin-file FILE --library-parameters STR
 *            --max-sessions N  --duration MS  --soak N
 *
 * Rows (every one: ops/s, p50/p99 latency, event-loop delay max/p99 and max net of the machine's
 *       pauses, the longest machine pause, ratio to the raw reference):
 *   hsmkey      jose through the global shim: JWT signing RS256 PS256 ES256 EdDSA HS256 and JWE
 *               decryption RSA-OAEP+A256GCM, ECDH-ES+A256KW, at concurrency 1, 8, 64
 *   raw-sync    pkcs11js C_SignInit+C_Sign (C_Decrypt, C_DeriveKey) in a synchronous loop on one
 *               session: what one thread gets from the token (the reference, ratio 1.0)
 *   raw-async   the same through pkcs11js' async calls, one session per core
 *   raw-threads the synchronous loop in one worker thread per core, each on its own session:
 *               what the token can give at all, in parallel (its ceiling on this machine)
 *   nwp11       node-webcrypto-p11 signing the same JWS input on the same token, same concurrency
 *   native      Node's WebCrypto with in-memory keys, through jose (the cost without an HSM)
 *   soak        100,000 ES256 JWTs (5,000 with --quick): RSS, sessions and objects before/after
 *
 * Results: bench/results/latest.json and latest.md (or --out DIR).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { constants as cryptoConstants, createHash, createPublicKey, publicEncrypt, randomBytes, webcrypto } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createRequire } from "node:module";
import * as jose from "jose";
import type * as pkcs11 from "pkcs11js";
import type * as Library from "../src/index.js";
import type { Hsm, HsmKey, HsmOptions, PoolStats, ThreadStats } from "../src/index.js";
import { CKA, CKD_NULL, CKK, CKM, CKO, PARAMS } from "../src/pkcs11/constants.js";
import { LoopDelay, type LoopFigures } from "./loop-delay.js";
import { LATE_MS, MachinePauses } from "./machine-pauses.js";
import { versus, type Versus } from "./versus.js";

type Group = "hsmkey" | "raw-sync" | "raw-async" | "raw-threads" | "nwp11" | "native" | "soak";

export interface Row {
  group: Group;
  workload: string;
  concurrency: number;
  ops: number;
  errors: number;
  /** First error message (errors are counted, never hidden). */
  firstError?: string;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  /** The longest event-loop delay less the machine's pauses during it (loop-delay.ts). */
  loopDelayNetMaxMs: number;
  /** The longest pause of the whole machine during the row, seen by a separate process (machine-pauses.ts). */
  machinePauseMaxMs: number | null;
  /** ops/s divided by the raw synchronous single-session reference of the same workload. */
  ratioToRawSync: number | null;
  unsupported?: string;
  soak?: {
    rssBeforeMb: number;
    rssAfterMb: number;
    rssGrowthMb: number;
    before: { sessions: PoolStats; threads: ThreadStats; objects: { token: number; session: number } };
    after: { sessions: PoolStats; threads: ThreadStats; objects: { token: number; session: number } };
  };
}

// ---------------------------------------------------------------- arguments

const argv = process.argv.slice(2);
function arg(name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}
const quick = argv.includes("--quick");
const rowMs = Number(arg("duration") ?? (quick ? 250 : 2000));
/**
 * Every row first runs its work unmeasured for a quarter of its time, then measures it without a
 * break: steady state, what a service sees after its first second. Measured cold, ES256 at 64
 * callers lost 5-8% to its first round (the code paths of batching and of signing beside the
 * threads are compiled, the threads' load learnt); the raw loops are warmed up just the same.
 */
const warmupMs = Math.round(rowMs / 4);
const soakCount = Number(arg("soak") ?? (quick ? 5_000 : 100_000));
const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(arg("out") ?? join(here, "results"));
const CONCURRENCY = [1, 8, 64];
const cores = availableParallelism();

/**
 * `--library dist` (what `npm run bench` does, after building): the compiled library, as it ships.
 * Without it, the TypeScript sources through tsx, whose esbuild names every closure as it is made
 * (measured: ES256 at 64 callers ~3% slower).
 */
const fromDist = arg("library") === "dist";
const { openHsm, installShim, ensureEmbeddedToken } = (await import(fromDist ? "../dist/src/index.js" : "../src/index.js")) as typeof Library;

const hsmOptions: HsmOptions = {};
if (arg("module")) hsmOptions.module = arg("module")!;
if (arg("token")) hsmOptions.token = arg("token")!;
if (arg("pin-file")) hsmOptions.pinFile = arg("pin-file")!;
if (arg("library-parameters")) hsmOptions.libraryParameters = arg("library-parameters")!;
if (arg("max-sessions")) hsmOptions.maxSessions = Number(arg("max-sessions"));

// ---------------------------------------------------------------- measurement

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

interface Sample {
  ops: number;
  errors: number;
  firstError?: string;
  seconds: number;
  latencies: Float64Array;
  loop: LoopFigures;
}

class Latencies {
  #buf = new Float64Array(1 << 14);
  #n = 0;
  push(v: number): void {
    if (this.#n === this.#buf.length) {
      const next = new Float64Array(this.#buf.length * 2);
      next.set(this.#buf);
      this.#buf = next;
    }
    this.#buf[this.#n++] = v;
  }
  sorted(): Float64Array {
    return this.#buf.slice(0, this.#n).sort();
  }
}

function errorText(error: unknown): string {
  const e = error as { name?: string; code?: string; message?: string };
  return `${e?.name ?? "Error"}${e?.code ? ` ${e.code}` : ""}: ${String(e?.message ?? error).slice(0, 200)}`;
}

/**
 * Run `op` from `concurrency` concurrent loops: `warmup` ms unmeasured, then `ms` measured (or, with
 * `count` and no warm-up, until `count` operations were started). What is measured is what
 * completes from the end of the warm-up on, wherever it started: with a slow token at 64 callers an
 * operation waits seconds, and counting only those started after the warm-up counted next to none.
 * Errors count in either phase.
 */
async function measureAsync(concurrency: number, ms: number, op: (worker: number) => Promise<unknown>, count?: number, warmup = warmupMs): Promise<Sample> {
  const latencies = new Latencies();
  let ops = 0;
  let errors = 0;
  let firstError: string | undefined;
  let started = 0;
  const loop = await LoopDelay.start(machine);
  let from = Infinity;
  const begin = () => {
    if (from !== Infinity) return;
    loop.restart();
    from = performance.now();
  };
  const warmUntil = performance.now() + warmup;
  if (warmup <= 0) begin();
  const timer = setTimeout(begin, warmup);
  const more = () => (count !== undefined ? started < count : performance.now() < from + ms);
  const caller = async (_: unknown, worker: number) => {
    while (more()) {
      if (performance.now() >= warmUntil) begin();
      started++;
      const s = performance.now();
      let ok = true;
      try {
        await op(worker);
      } catch (error) {
        ok = false;
        errors++;
        firstError ??= errorText(error);
      }
      const e = performance.now();
      if (e < from) continue;
      if (ok) ops++;
      latencies.push(e - s);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, caller));
  clearTimeout(timer);
  const seconds = (performance.now() - from) / 1000;
  return {
    ops, errors, seconds, latencies: latencies.sorted(), loop: await loop.stop(),
    ...(firstError ? { firstError } : {}),
  };
}

/** A synchronous loop: the event loop is blocked for the whole row, and the figures say so. */
async function measureSync(ms: number, op: () => void): Promise<Sample> {
  const latencies = new Latencies();
  let ops = 0;
  let errors = 0;
  let firstError: string | undefined;
  /** One operation; whether it succeeded (a failure is counted, in either phase). */
  const once = (): boolean => {
    try {
      op();
      return true;
    } catch (error) {
      errors++;
      firstError ??= errorText(error);
      return false;
    }
  };
  const warmUntil = performance.now() + warmupMs;
  while (performance.now() < warmUntil) once();
  // Its timers must run before the loop blocks them, or the block goes unrecorded.
  const loop = await LoopDelay.start(machine);
  const t0 = performance.now();
  const end = t0 + ms;
  while (performance.now() < end) {
    const s = performance.now();
    if (once()) ops++;
    latencies.push(performance.now() - s);
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    ops, errors, seconds, latencies: latencies.sorted(), loop: await loop.stop(),
    ...(firstError ? { firstError } : {}),
  };
}

const rows: Row[] = [];
const rawSync = new Map<string, number>();

function record(group: Group, workload: string, concurrency: number, s: Sample, extra: Partial<Row> = {}): Row {
  const opsPerSec = s.seconds > 0 ? s.ops / s.seconds : 0;
  if (group === "raw-sync") rawSync.set(workload, opsPerSec);
  const ref = rawSync.get(workload);
  const row: Row = {
    group, workload, concurrency,
    ops: s.ops, errors: s.errors,
    ...(s.firstError ? { firstError: s.firstError } : {}),
    seconds: round(s.seconds),
    opsPerSec: round(opsPerSec, 1),
    p50Ms: round(percentile(s.latencies, 50), 4),
    p99Ms: round(percentile(s.latencies, 99), 4),
    loopDelayMaxMs: round(s.loop.max, 2),
    loopDelayP99Ms: round(s.loop.p99, 2),
    loopDelayNetMaxMs: round(s.loop.netMax, 2),
    machinePauseMaxMs: s.loop.machineMax === undefined ? null : round(s.loop.machineMax, 2),
    ratioToRawSync: ref ? round(opsPerSec / ref, 3) : null,
    ...extra,
  };
  rows.push(row);
  const err = row.errors ? `  errors ${row.errors} (${row.firstError})` : "";
  console.log(
    `${group.padEnd(9)} ${workload.padEnd(22)} c=${String(concurrency).padStart(2)}  ${row.opsPerSec.toFixed(0).padStart(8)} ops/s  ` +
      `p50 ${row.p50Ms.toFixed(3)} ms  p99 ${row.p99Ms.toFixed(3)} ms  loop max ${row.loopDelayMaxMs} ms (net ${row.loopDelayNetMaxMs}, machine ${row.machinePauseMaxMs ?? "-"})  x${row.ratioToRawSync ?? "-"}${err}`,
  );
  return row;
}

function unsupported(group: Group, workload: string, concurrency: number, reason: string): void {
  rows.push({
    group, workload, concurrency, ops: 0, errors: 0, seconds: 0, opsPerSec: 0, p50Ms: 0, p99Ms: 0,
    loopDelayMaxMs: 0, loopDelayP99Ms: 0, loopDelayNetMaxMs: 0, machinePauseMaxMs: null, ratioToRawSync: null, unsupported: reason,
  });
  console.log(`${group.padEnd(9)} ${workload.padEnd(22)} c=${String(concurrency).padStart(2)}  unsupported: ${reason}`);
}

// ---------------------------------------------------------------- workloads

const ALL_SIGN_ALGS = ["RS256", "PS256", "ES256", "EdDSA", "HS256"] as const;
type SignAlg = (typeof ALL_SIGN_ALGS)[number];
const ALL_JWE_ALGS = ["RSA-OAEP", "ECDH-ES+A256KW"] as const;
type JweAlg = (typeof ALL_JWE_ALGS)[number];
const jweWorkload = (alg: JweAlg) => `JWE ${alg}+A256GCM`;
/** `--only <regex>`: the workloads whose name matches (e.g. `--only ES256`), in every group. */
const only = arg("only") !== undefined ? new RegExp(arg("only")!) : undefined;
const SIGN_ALGS = ALL_SIGN_ALGS.filter((alg) => !only || only.test(`JWT ${alg}`));
const JWE_ALGS = ALL_JWE_ALGS.filter((alg) => !only || only.test(jweWorkload(alg)));
const claims = { sub: "user-1234", iss: "https://issuer.example", aud: "api", scope: "read write" };
const header = (alg: string) => ({ alg, typ: "JWT", kid: "bench" });

function signJwt(alg: string, key: CryptoKey | Uint8Array): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader(header(alg)).setIssuedAt().setExpirationTime("5m").sign(key);
}

/** The JWS signing input for `alg` (what nwp11 and the raw loops sign). */
function signingInput(alg: string): Buffer {
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return Buffer.from(`${enc(header(alg))}.${enc({ ...claims, iat: 1_700_000_000, exp: 1_700_000_300 })}`);
}

/** The mechanism and input the token gets for a signature of `alg`, as hsmkey would choose them. */
function rawSignature(hsm: Hsm, alg: SignAlg): { mechanism: pkcs11.Mechanism; input: Buffer; outLength: number } {
  const data = signingInput(alg);
  const t = hsm.token;
  switch (alg) {
    case "RS256":
      return { mechanism: { mechanism: CKM.SHA256_RSA_PKCS }, input: data, outLength: 256 };
    case "PS256":
      return {
        mechanism: { mechanism: CKM.SHA256_RSA_PKCS_PSS, parameter: { type: PARAMS.RSA_PSS, hashAlg: CKM.SHA256, mgf: 2, saltLen: 32 } as pkcs11.IParams },
        input: data, outLength: 256,
      };
    case "ES256":
      return t.has(CKM.ECDSA_SHA256)
        ? { mechanism: { mechanism: CKM.ECDSA_SHA256 }, input: data, outLength: 64 }
        : { mechanism: { mechanism: CKM.ECDSA }, input: createHash("sha256").update(data).digest(), outLength: 64 };
    case "EdDSA":
      return { mechanism: { mechanism: CKM.EDDSA }, input: data, outLength: 64 };
    case "HS256":
      return { mechanism: { mechanism: CKM.SHA256_HMAC }, input: data, outLength: 32 };
  }
}

function carrier(extra: pkcs11.Template = []): pkcs11.Template {
  return [
    { type: CKA.CLASS, value: CKO.SECRET_KEY }, { type: CKA.KEY_TYPE, value: CKK.GENERIC_SECRET },
    { type: CKA.TOKEN, value: false }, { type: CKA.SENSITIVE, value: false }, { type: CKA.EXTRACTABLE, value: true }, ...extra,
  ];
}

interface Keys {
  sign: Partial<Record<SignAlg, HsmKey>>;
  jwe: Partial<Record<JweAlg, HsmKey>>;
}

// ---------------------------------------------------------------- main

/** The machine-pause probe (machine-pauses.ts); without it, net figures are the plain ones. */
let machine: MachinePauses | undefined;

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  machine = await MachinePauses.start().catch((error: unknown) => {
    console.log(`no machine-pause probe (${errorText(error)}): event-loop delays are not given net of the machine's pauses`);
    return undefined;
  });
  if (machine && machine.nice >= 0) console.log(`the machine-pause probe runs at nice ${machine.nice}: CPU contention from this benchmark may delay it, and count as a machine pause`);
  const hsm = await openHsm(hsmOptions);
  installShim();
  console.log(`token '${hsm.info.label}' (${hsm.info.manufacturer} ${hsm.info.model}) via ${hsm.info.module}; ${cores} cores; ${quick ? "quick" : "full"} run, ${rowMs} ms per row; library from ${fromDist ? "dist (compiled)" : "src (tsx)"}`);

  const keys: Keys = { sign: {}, jwe: {} };
  const created: HsmKey[] = [];
  const tag = randomBytes(3).toString("hex");
  for (const [use, algs, into] of [["sig", SIGN_ALGS, keys.sign], ["enc", JWE_ALGS, keys.jwe]] as const) {
    for (const alg of algs) {
      try {
        const key = await hsm.generateKey(alg, { label: `hsmkey-bench-${tag}-${alg}`, use });
        (into as Record<string, HsmKey>)[alg] = key;
        created.push(key);
      } catch (error) {
        console.log(`cannot generate an ${alg} key on this token: ${errorText(error)}`);
      }
    }
  }

  try {
    await rawReferences(hsm, keys, { objectMaking: false });
    await rawThreadRows(hsm, keys);
    await hsmkeyRows(keys);
    await nwp11Rows(hsm, keys);
    await nativeRows();
    await soak(hsm, keys);
    await rawReferences(hsm, keys, { objectMaking: true });
    // Rows measured before their raw reference (see rawReferences) get their ratio now.
    for (const row of rows) {
      const ref = rawSync.get(row.workload);
      if (row.ratioToRawSync === null && ref && !row.unsupported) row.ratioToRawSync = round(row.opsPerSec / ref, 3);
    }
  } finally {
    for (const key of created) await hsm.deleteKey({ label: key.label! }).catch(() => undefined);
    await hsm.close();
    machine?.stop();
  }

  const result = {
    startedAt,
    finishedAt: new Date().toISOString(),
    quick,
    rowMs,
    library: fromDist ? "dist" : "src",
    machine: {
      cpu: cpus()[0]?.model ?? "unknown",
      cores,
      memoryGb: round(totalmem() / 2 ** 30, 1),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
    },
    token: { label: hsm.info.label, manufacturer: hsm.info.manufacturer, model: hsm.info.model, module: hsm.info.module, embedded: hsm.info.embedded },
    rows,
    versusNwp11: versus(rows),
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(outDir, "latest.md"), markdown(result));
  console.log(`wrote ${join(outDir, "latest.json")} and latest.md`);
}

/**
 * The raw loops, on the process's (the main thread's) instance of the module. Those that make a
 * session object per operation (ECDH's derived secret) run only with `objectMaking`, at the end of
 * the run: SoftHSM keeps every destroyed session object until C_Finalize and slows down as they
 * pile up (measured: 30,000 of them cut its ES256 loop from 21,700/s to 15,700/s), so running them
 * first would slow every row after them, hsmkey's inline signing included, but not their reference.
 */
async function rawReferences(hsm: Hsm, keys: Keys, { objectMaking }: { objectMaking: boolean }): Promise<void> {
  const lib = hsm.token.lib;
  const pool = hsm.token.pool;
  type RawOp = { workload: string; sync: (s: pkcs11.Handle) => void; async: (s: pkcs11.Handle) => Promise<unknown> };
  const ops: RawOp[] = [];
  const session = pool.openSession();
  try {
    for (const alg of objectMaking ? [] : SIGN_ALGS) {
      const key = keys.sign[alg];
      if (!key) continue;
      const { mechanism, input, outLength } = rawSignature(hsm, alg);
      const handle = (key.objects.privateKey ?? key.objects.secretKey)!.handle(session);
      const out = Buffer.alloc(outLength);
      ops.push({
        workload: `JWT ${alg}`,
        sync: (s) => {
          lib.C_SignInit(s, mechanism, handle);
          lib.C_Sign(s, input, out);
        },
        async: (s) => {
          lib.C_SignInit(s, mechanism, handle);
          return lib.C_SignAsync(s, input, Buffer.alloc(outLength));
        },
      });
    }
    const oaepKey = keys.jwe["RSA-OAEP"];
    if (oaepKey && !objectMaking) {
      const publicKey = createPublicKey({ key: { ...oaepKey.exportPublic() } as import("node:crypto").JsonWebKey, format: "jwk" });
      const ciphertext = publicEncrypt({ key: publicKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, randomBytes(32));
      const handle = oaepKey.objects.privateKey!.handle(session);
      const mechanism = { mechanism: CKM.RSA_PKCS_OAEP, parameter: { type: PARAMS.RSA_OAEP, hashAlg: CKM.SHA_1, mgf: 1, source: 1 } as pkcs11.IParams };
      ops.push({
        workload: jweWorkload("RSA-OAEP"),
        sync: (s) => {
          lib.C_DecryptInit(s, mechanism, handle);
          lib.C_Decrypt(s, ciphertext, Buffer.alloc(256));
        },
        async: (s) => {
          lib.C_DecryptInit(s, mechanism, handle);
          return lib.C_DecryptAsync(s, ciphertext, Buffer.alloc(256));
        },
      });
    }
    const ecdhKey = keys.jwe["ECDH-ES+A256KW"];
    if (ecdhKey && objectMaking) {
      const peer = (await webcrypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"])) as CryptoKeyPair;
      const publicData = Buffer.from(await webcrypto.subtle.exportKey("raw", peer.publicKey));
      const handle = ecdhKey.objects.privateKey!.handle(session);
      const mechanism = { mechanism: CKM.ECDH1_DERIVE, parameter: { type: PARAMS.EC_DH, kdf: CKD_NULL, publicData } as pkcs11.IParams };
      const template = carrier([{ type: CKA.VALUE_LEN, value: 32 }]);
      const derive = (s: pkcs11.Handle, derived: pkcs11.Handle) => {
        try {
          lib.C_GetAttributeValue(s, derived, [{ type: CKA.VALUE }]);
        } finally {
          lib.C_DestroyObject(s, derived);
        }
      };
      ops.push({
        workload: jweWorkload("ECDH-ES+A256KW"),
        sync: (s) => derive(s, lib.C_DeriveKey(s, mechanism, handle, template)),
        async: async (s) => derive(s, await lib.C_DeriveKeyAsync(s, mechanism, handle, template)),
      });
    }

    for (const op of ops) record("raw-sync", op.workload, 1, await measureSync(rowMs, () => op.sync(session)));

    const sessions = Array.from({ length: cores }, () => pool.openSession());
    try {
      for (const op of ops) {
        // One loop per session: a session never has two operations at once.
        const sample = await measureAsync(sessions.length, rowMs, (worker) => op.async(sessions[worker]!));
        record("raw-async", op.workload, sessions.length, sample);
      }
    } finally {
      for (const s of sessions) lib.C_CloseSession(s);
    }
  } finally {
    lib.C_CloseSession(session);
  }
}

/** Runs in each raw-threads worker: a synchronous sign loop on a session of its own. */
const RAW_THREAD_SOURCE = `
const { parentPort, workerData: w } = require("node:worker_threads");
const { PKCS11 } = require(w.pkcs11js);
const lib = new PKCS11();
lib.load(w.library);
try { lib.C_Initialize({ flags: 2 }); } catch {}
const session = lib.C_OpenSession(Buffer.from(w.slot), 6);
const key = Buffer.from(w.key), input = Buffer.from(w.input), out = Buffer.alloc(w.outLength);
const latencies = [];
let ops = 0, errors = 0, firstError;
const warmUntil = performance.now() + w.warmupMs;
while (performance.now() < warmUntil) { try { lib.C_SignInit(session, w.mechanism, key); lib.C_Sign(session, input, out); } catch (e) { errors++; firstError ??= String(e && e.message); } }
const t0 = performance.now(), end = t0 + w.ms;
while (performance.now() < end) {
  const s = performance.now();
  try { lib.C_SignInit(session, w.mechanism, key); lib.C_Sign(session, input, out); ops++; }
  catch (e) { errors++; firstError ??= String(e && e.message); }
  if ((ops & 15) === 0) latencies.push(performance.now() - s);
}
lib.C_CloseSession(session);
parentPort.postMessage({ ops, errors, firstError, seconds: (performance.now() - t0) / 1000, latencies });
`;

async function rawThreadRows(hsm: Hsm, keys: Keys): Promise<void> {
  const { Worker } = await import("node:worker_threads");
  const pkcs11js = createRequire(import.meta.url).resolve("pkcs11js");
  const session = hsm.token.pool.openSession();
  try {
    for (const alg of SIGN_ALGS) {
      const key = keys.sign[alg];
      if (!key) continue;
      const { mechanism, input, outLength } = rawSignature(hsm, alg);
      const handle = (key.objects.privateKey ?? key.objects.secretKey)!.handle(session);
      const loop = await LoopDelay.start(machine);
      type Part = { ops: number; errors: number; firstError?: string; seconds: number; latencies: number[] };
      const parts = await Promise.all(
        Array.from({ length: cores }, () => new Promise<Part>((resolvePart, reject) => {
          const worker = new Worker(RAW_THREAD_SOURCE, {
            eval: true,
            workerData: { pkcs11js, library: hsm.token.module.path, slot: new Uint8Array(hsm.token.slot), key: new Uint8Array(handle), mechanism, input: new Uint8Array(input), outLength, ms: rowMs, warmupMs },
          });
          worker.once("message", resolvePart);
          worker.once("error", reject);
        })),
      );
      const figures = await loop.stop();
      const latencies = Float64Array.from(parts.flatMap((p) => p.latencies)).sort();
      const firstError = parts.find((p) => p.firstError)?.firstError;
      record("raw-threads", `JWT ${alg}`, cores, {
        ops: parts.reduce((n, p) => n + p.ops, 0),
        errors: parts.reduce((n, p) => n + p.errors, 0),
        ...(firstError ? { firstError } : {}),
        seconds: Math.max(...parts.map((p) => p.seconds)),
        latencies,
        loop: figures,
      });
    }
  } finally {
    hsm.token.lib.C_CloseSession(session);
  }
}

async function hsmkeyRows(keys: Keys): Promise<void> {
  for (const alg of SIGN_ALGS) {
    const key = keys.sign[alg];
    for (const c of CONCURRENCY) {
      if (!key) {
        unsupported("hsmkey", `JWT ${alg}`, c, "the token has no key for it");
        continue;
      }
      const signingKey = (key.privateKey ?? key.secretKey)!;
      record("hsmkey", `JWT ${alg}`, c, await measureAsync(c, rowMs, () => signJwt(alg, signingKey)));
    }
  }
  for (const alg of JWE_ALGS) {
    const key = keys.jwe[alg];
    for (const c of CONCURRENCY) {
      if (!key) {
        unsupported("hsmkey", jweWorkload(alg), c, "the token has no key for it");
        continue;
      }
      const jwe = await new jose.CompactEncrypt(Buffer.from(JSON.stringify(claims))).setProtectedHeader({ alg, enc: "A256GCM" }).encrypt(key.publicKey!);
      record("hsmkey", jweWorkload(alg), c, await measureAsync(c, rowMs, () => jose.compactDecrypt(jwe, key.privateKey!)));
    }
  }
}

/** node-webcrypto-p11 on the same token. It is never closed: its close() would log out and C_Finalize the module we share. */
async function nwp11Rows(hsm: Hsm, keys: Keys): Promise<void> {
  let Crypto: new (props: Record<string, unknown>) => {
    subtle: SubtleCrypto;
    keyStorage: { getItem(id: string, algorithm: Algorithm, usages: KeyUsage[]): Promise<CryptoKey | null> };
  };
  try {
    ({ Crypto } = createRequire(import.meta.url)("node-webcrypto-p11"));
  } catch (error) {
    for (const alg of SIGN_ALGS) for (const c of CONCURRENCY) unsupported("nwp11", `JWT ${alg}`, c, `node-webcrypto-p11 not installed: ${errorText(error)}`);
    return;
  }
  const lib = hsm.token.lib;
  const slots = lib.C_GetSlotList(true);
  const slotIndex = slots.findIndex((s) => lib.C_GetTokenInfo(s).label.trim() === hsm.info.label);
  const pin = await pinForNwp11(hsm);
  let provider: InstanceType<typeof Crypto>;
  try {
    provider = new Crypto({ library: hsm.info.module, slot: slotIndex, readWrite: true, ...(pin ? { pin } : {}) });
  } catch (error) {
    for (const alg of SIGN_ALGS) for (const c of CONCURRENCY) unsupported("nwp11", `JWT ${alg}`, c, `cannot open the token: ${errorText(error)}`);
    return;
  }
  const ALGORITHM: Record<SignAlg, { key: Algorithm & Record<string, unknown>; sign: Algorithm & Record<string, unknown> }> = {
    RS256: { key: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, sign: { name: "RSASSA-PKCS1-v1_5" } },
    PS256: { key: { name: "RSA-PSS", hash: "SHA-256" }, sign: { name: "RSA-PSS", saltLength: 32 } },
    ES256: { key: { name: "ECDSA", namedCurve: "P-256" }, sign: { name: "ECDSA", hash: "SHA-256" } },
    EdDSA: { key: { name: "Ed25519" }, sign: { name: "Ed25519" } },
    HS256: { key: { name: "HMAC", hash: "SHA-256" }, sign: { name: "HMAC" } },
  };
  for (const alg of SIGN_ALGS) {
    const key = keys.sign[alg];
    let p11Key: CryptoKey | null = null;
    let why = "the token has no key for it";
    if (key) {
      const part = (key.objects.privateKey ?? key.objects.secretKey)!;
      const id = `${part.info.class}-${Buffer.from(part.handle(hsm.token.anchor)).toString("hex")}-${Buffer.from(part.info.id ?? []).toString("hex")}`;
      try {
        p11Key = await provider.keyStorage.getItem(id, ALGORITHM[alg].key, ["sign"]);
        if (!p11Key) why = `node-webcrypto-p11 does not find ${id}`;
      } catch (error) {
        why = `node-webcrypto-p11 cannot use the key: ${errorText(error)}`;
      }
    }
    const input = signingInput(alg);
    if (p11Key) {
      try {
        await provider.subtle.sign(ALGORITHM[alg].sign, p11Key, new Uint8Array(input));
      } catch (error) {
        why = `node-webcrypto-p11 cannot sign: ${errorText(error)}`;
        p11Key = null;
      }
    }
    for (const c of CONCURRENCY) {
      if (!p11Key) {
        unsupported("nwp11", `JWT ${alg}`, c, why);
        continue;
      }
      const k = p11Key;
      // What jose does around the signature: base64url of the result appended to the input.
      const sample = await measureAsync(c, rowMs, async () => {
        const sig = await provider.subtle.sign(ALGORITHM[alg].sign, k, new Uint8Array(input));
        return `${input.toString()}.${Buffer.from(sig).toString("base64url")}`;
      });
      record("nwp11", `JWT ${alg}`, c, sample);
    }
  }
}

/** The PIN node-webcrypto-p11 needs to log in to the same token (never printed). */
async function pinForNwp11(hsm: Hsm): Promise<string | undefined> {
  const file = hsmOptions.pinFile ?? process.env.HSMKEY_PIN_FILE;
  if (hsmOptions.pin ?? process.env.HSMKEY_PIN) return hsmOptions.pin ?? process.env.HSMKEY_PIN;
  if (file) return readFileSync(file, "utf8").split(/\r?\n/)[0];
  if (hsm.info.embedded) return ensureEmbeddedToken(hsmOptions.home ? { home: hsmOptions.home } : {}).pin;
  return undefined;
}

async function nativeRows(): Promise<void> {
  const subtle = webcrypto.subtle;
  const gen = async (alg: Algorithm | RsaHashedKeyGenParams | EcKeyGenParams | HmacKeyGenParams, usages: KeyUsage[]) => subtle.generateKey(alg, false, usages);
  const rsa = (name: string) => ({ name, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" });
  const signing: Record<SignAlg, CryptoKey> = {
    RS256: ((await gen(rsa("RSASSA-PKCS1-v1_5"), ["sign", "verify"])) as CryptoKeyPair).privateKey,
    PS256: ((await gen(rsa("RSA-PSS"), ["sign", "verify"])) as CryptoKeyPair).privateKey,
    ES256: ((await gen({ name: "ECDSA", namedCurve: "P-256" } as EcKeyGenParams, ["sign", "verify"])) as CryptoKeyPair).privateKey,
    EdDSA: ((await gen({ name: "Ed25519" }, ["sign", "verify"])) as CryptoKeyPair).privateKey,
    HS256: (await gen({ name: "HMAC", hash: "SHA-256", length: 256 } as HmacKeyGenParams, ["sign", "verify"])) as CryptoKey,
  };
  for (const alg of SIGN_ALGS) {
    for (const c of CONCURRENCY) record("native", `JWT ${alg}`, c, await measureAsync(c, rowMs, () => signJwt(alg, signing[alg])));
  }
  const oaep = (await gen({ ...rsa("RSA-OAEP"), hash: "SHA-1" }, ["decrypt", "unwrapKey", "encrypt", "wrapKey"])) as CryptoKeyPair;
  const ecdh = (await gen({ name: "ECDH", namedCurve: "P-256" } as EcKeyGenParams, ["deriveBits"])) as CryptoKeyPair;
  const pairs: Record<JweAlg, CryptoKeyPair> = { "RSA-OAEP": oaep, "ECDH-ES+A256KW": ecdh };
  for (const alg of JWE_ALGS) {
    const jwe = await new jose.CompactEncrypt(Buffer.from(JSON.stringify(claims))).setProtectedHeader({ alg, enc: "A256GCM" }).encrypt(pairs[alg].publicKey);
    for (const c of CONCURRENCY) record("native", jweWorkload(alg), c, await measureAsync(c, rowMs, () => jose.compactDecrypt(jwe, pairs[alg].privateKey)));
  }
}

function collectGarbage(): void {
  try {
    setFlagsFromString("--expose-gc");
    (runInNewContext("gc") as () => void)();
  } catch {
    // without gc the RSS figure is only noisier
  }
}

async function soak(hsm: Hsm, keys: Keys): Promise<void> {
  const key = keys.sign.ES256;
  if (!key) {
    unsupported("soak", `${soakCount} x JWT ES256`, 64, "the token has no ES256 key");
    return;
  }
  collectGarbage();
  const rssBefore = process.memoryUsage().rss;
  const before = await hsm.stats();
  const sample = await measureAsync(64, Infinity, () => signJwt("ES256", key.privateKey!), soakCount, 0);
  collectGarbage();
  const rssAfter = process.memoryUsage().rss;
  const after = await hsm.stats();
  const mb = (n: number) => round(n / 2 ** 20, 1);
  record("soak", "JWT ES256", 64, sample, {
    workload: `JWT ES256 soak x${soakCount}`,
    soak: {
      rssBeforeMb: mb(rssBefore), rssAfterMb: mb(rssAfter), rssGrowthMb: mb(rssAfter - rssBefore),
      before: { sessions: before.sessions, threads: before.threads, objects: before.objects },
      after: { sessions: after.sessions, threads: after.threads, objects: after.objects },
    },
  });
  const s = rows[rows.length - 1]!.soak!;
  console.log(`soak: RSS ${s.rssBeforeMb} -> ${s.rssAfterMb} MB; sessions ${JSON.stringify(before.sessions)} -> ${JSON.stringify(after.sessions)}; token threads ${JSON.stringify(before.threads)} -> ${JSON.stringify(after.threads)}; objects ${JSON.stringify(before.objects)} -> ${JSON.stringify(after.objects)}`);
}

function markdown(result: { startedAt: string; quick: boolean; rowMs: number; library: string; machine: Record<string, unknown>; token: Record<string, unknown>; rows: Row[]; versusNwp11: Versus[] }): string {
  const m = result.machine;
  const lines = [
    `# hsmkey benchmark (${result.quick ? "quick pass: not a measurement" : "full run"})`,
    "",
    `${result.startedAt}; ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB, Node ${m.node}, ${m.platform}.`,
    `Token '${result.token.label}' (${result.token.manufacturer} ${result.token.model}, ${result.token.module}). ${result.rowMs} ms per row, after ${Math.round(result.rowMs / 4)} ms of the same work unmeasured; hsmkey ${result.library === "dist" ? "compiled (dist)" : "from its TypeScript sources (tsx)"}.`,
    "Reproduce: `npm run bench` (`-- --quick` for a smoke pass). Ratio: ops/s over the raw synchronous single-session PKCS#11 loop of the same workload.",
    `Loop max net: the longest event-loop delay less the pauses of the whole machine during it; machine pause: the longest time a separate process, asleep between 5 ms timers, could not run (bench/machine-pauses.ts; ${LATE_MS} ms late or more).`,
    "",
    "| group | workload | conc. | ops/s | p50 ms | p99 ms | loop max ms | loop p99 ms | loop max net ms | machine pause ms | x raw sync | errors |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of result.rows) {
    if (r.unsupported) {
      lines.push(`| ${r.group} | ${r.workload} | ${r.concurrency} | — | | | | | | | | unsupported: ${r.unsupported.replace(/\|/g, "/")} |`);
      continue;
    }
    lines.push(
      `| ${r.group} | ${r.workload} | ${r.concurrency} | ${r.opsPerSec.toFixed(0)} | ${r.p50Ms.toFixed(3)} | ${r.p99Ms.toFixed(3)} | ${r.loopDelayMaxMs} | ${r.loopDelayP99Ms} | ${r.loopDelayNetMaxMs} | ${r.machinePauseMaxMs ?? "—"} | ${r.ratioToRawSync ?? "—"} | ${r.errors}${r.firstError ? ` (${r.firstError.replace(/\|/g, "/")})` : ""} |`,
    );
  }
  const soakRow = result.rows.find((r) => r.soak);
  if (soakRow?.soak) {
    const s = soakRow.soak;
    lines.push("", `Soak (${soakRow.workload}): RSS ${s.rssBeforeMb} → ${s.rssAfterMb} MB (${s.rssGrowthMb >= 0 ? "+" : ""}${s.rssGrowthMb} MB); sessions ${JSON.stringify(s.before.sessions)} → ${JSON.stringify(s.after.sessions)}; token threads ${JSON.stringify(s.before.threads)} → ${JSON.stringify(s.after.threads)}; objects ${JSON.stringify(s.before.objects)} → ${JSON.stringify(s.after.objects)}.`);
  }
  if (result.versusNwp11.length) {
    lines.push(
      "",
      "Against node-webcrypto-p11, at the highest concurrency both ran. raw-threads ÷ nwp11: what one bare synchronous loop per core gets from the token, over nwp11; where the token signs in parallel (RSA on SoftHSM), no library on this machine gets more.",
      "",
      "| workload | conc. | hsmkey ops/s | nwp11 ops/s (errors) | hsmkey ÷ nwp11 | raw-threads ÷ nwp11 |",
      "|---|---:|---:|---:|---:|---:|",
    );
    for (const v of result.versusNwp11) {
      lines.push(`| ${v.workload} | ${v.concurrency} | ${v.hsmkey.toFixed(0)} | ${v.nwp11.toFixed(0)} (${v.nwp11Errors}) | ${v.ratio} | ${v.rawThreads ?? "—"} |`);
    }
  }
  return `${lines.join("\n")}\n`;
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
