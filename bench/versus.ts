/**
 * hsmkey against node-webcrypto-p11, one line per workload, at the highest concurrency both ran.
 * Beside the ratio stands what two bare threads get: `raw-threads` (one worker per core, each in a
 * synchronous C_SignInit+C_Sign loop on its own session) over nwp11. Where the token signs in
 * parallel on one instance of its library (RSA on SoftHSM), no library on this machine can beat
 * that figure: it is the token's throughput on every core with nothing else to do.
 */
import type { Row } from "./run.js";

export interface Versus {
  workload: string;
  concurrency: number;
  hsmkey: number;
  nwp11: number;
  nwp11Errors: number;
  /** hsmkey's ops/s over nwp11's. */
  ratio: number;
  /** raw-threads' ops/s over nwp11's, where the workload has a raw-threads row. */
  rawThreads: number | null;
}

const measured = (r: Row): boolean => !r.unsupported && r.opsPerSec > 0;

export function versus(rows: readonly Row[]): Versus[] {
  const ours = (theirs: Row) => rows.find((r) => r.group === "hsmkey" && r.workload === theirs.workload && r.concurrency === theirs.concurrency && measured(r));
  // Per workload, nwp11's row at the highest concurrency that hsmkey also ran, in row order.
  const highest = new Map<string, Row>();
  for (const theirs of rows) {
    if (theirs.group !== "nwp11" || !measured(theirs) || !ours(theirs)) continue;
    if ((highest.get(theirs.workload)?.concurrency ?? -1) < theirs.concurrency) highest.set(theirs.workload, theirs);
  }
  return [...highest.values()].map((theirs) => {
    const mine = ours(theirs)!;
    const bare = rows.find((r) => r.group === "raw-threads" && r.workload === theirs.workload && measured(r));
    return {
      workload: theirs.workload,
      concurrency: theirs.concurrency,
      hsmkey: mine.opsPerSec,
      nwp11: theirs.opsPerSec,
      nwp11Errors: theirs.errors,
      ratio: round2(mine.opsPerSec / theirs.opsPerSec),
      rawThreads: bare ? round2(bare.opsPerSec / theirs.opsPerSec) : null,
    };
  });
}

const round2 = (x: number): number => Math.round(x * 100) / 100;
