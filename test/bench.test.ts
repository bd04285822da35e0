/**
 * `bench/run.ts --quick` as a smoke test: every row is there and did work, and hsmkey's own rows
 * had no error. No timing assertion: CI machines vary.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Row } from "../bench/run.js"; // type only: importing it does not run the bench
import { LoopDelay } from "../bench/loop-delay.js";
import { covered, MachinePauses } from "../bench/machine-pauses.js";
import { versus, type Versus } from "../bench/versus.js";

const SIGN = ["RS256", "PS256", "ES256", "EdDSA", "HS256"];
const JWE = ["JWE RSA-OAEP+A256GCM", "JWE ECDH-ES+A256KW+A256GCM"];

test("npm run bench -- --quick writes every row, with work done and no error on hsmkey's rows", { timeout: 170_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "hsmkey-bench-"));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, HSMKEY_HOME: join(dir, "home") };
    for (const k of ["HSMKEY_MODULE", "HSMKEY_TOKEN", "HSMKEY_PIN", "HSMKEY_PIN_FILE", "HSMKEY_SLOT", "HSMKEY_SERIAL", "HSMKEY_LIBRARY_PARAMETERS", "SOFTHSM2_CONF"]) delete env[k];
    const out = join(dir, "results");
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "bench/run.ts", "--quick", "--duration", "150", "--out", out], {
      env,
      cwd: join(import.meta.dirname, ".."),
      maxBuffer: 1 << 24,
    });
    assert.match(stdout, /wrote .*latest\.json/);
    const result = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as { quick: boolean; rows: Row[]; token: { embedded: boolean } };
    assert.equal(result.quick, true);
    assert.equal(result.token.embedded, true);
    const rows = result.rows;
    const find = (group: string, workload: string, concurrency?: number) =>
      rows.filter((r) => r.group === group && r.workload === workload && (concurrency === undefined || r.concurrency === concurrency));

    const workloads = [...SIGN.map((a) => `JWT ${a}`), ...JWE];
    for (const w of workloads) {
      assert.equal(find("raw-sync", w, 1).length, 1, `raw-sync ${w}`);
      assert.equal(find("raw-async", w).length, 1, `raw-async ${w}`);
      for (const c of [1, 8, 64]) {
        assert.equal(find("hsmkey", w, c).length, 1, `hsmkey ${w} c=${c}`);
        assert.equal(find("native", w, c).length, 1, `native ${w} c=${c}`);
      }
    }
    for (const a of SIGN) for (const c of [1, 8, 64]) assert.equal(find("nwp11", `JWT ${a}`, c).length, 1, `nwp11 ${a} c=${c}`);
    for (const a of SIGN) assert.equal(find("raw-threads", `JWT ${a}`).length, 1, `raw-threads ${a}`);

    for (const r of rows) {
      const name = `${r.group} ${r.workload} c=${r.concurrency}`;
      if (r.unsupported) {
        // Only the reference library may lack something (node-webcrypto-p11 has no Ed25519).
        assert.equal(r.group, "nwp11", `${name} unsupported: ${r.unsupported}`);
        continue;
      }
      assert.ok(r.ops > 0 && r.opsPerSec > 0, `${name}: no operation completed`);
      assert.ok(r.p50Ms > 0 && r.p99Ms >= r.p50Ms, `${name}: latency percentiles`);
      assert.ok(r.loopDelayMaxMs >= 0 && r.loopDelayP99Ms >= 0);
      assert.ok(r.loopDelayNetMaxMs >= 0, `${name}: net loop delay`);
      assert.equal(typeof r.machinePauseMaxMs, "number", `${name}: the machine-pause probe did not report`);
      if (r.group !== "nwp11") assert.equal(r.errors, 0, `${name}: ${r.firstError}`);
      if (r.group === "raw-sync") {
        assert.equal(r.ratioToRawSync, 1);
        // A synchronous loop holds the event loop for its whole row (150 ms): the figure must say so.
        assert.ok(r.loopDelayMaxMs >= 140, `${name}: loop max ${r.loopDelayMaxMs} ms, where the loop was blocked for the whole row`);
      }
      else assert.ok(typeof r.ratioToRawSync === "number" && r.ratioToRawSync > 0, `${name}: ratio`);
    }

    const soak = rows.filter((r) => r.group === "soak");
    assert.equal(soak.length, 1);
    assert.equal(soak[0]!.ops, 5000);
    assert.equal(soak[0]!.errors, 0);
    const s = soak[0]!.soak!;
    assert.ok(s.rssBeforeMb > 0 && s.rssAfterMb > 0);
    assert.equal(s.after.objects.session, s.before.objects.session, "session objects left by the soak");
    assert.equal(s.after.objects.token, s.before.objects.token, "token objects left by the soak");
    assert.equal(s.after.sessions.busy, 0);
    assert.equal(s.after.threads.pending, 0, "operations still owed by token threads after the soak");
    assert.equal(s.after.threads.stalled, 0);

    const md = readFileSync(join(out, "latest.md"), "utf8");
    assert.match(md, /^# hsmkey benchmark \(quick pass/);
    const table = md.slice(md.indexOf("| group")).split("\n\n")[0]!.split("\n").slice(2);
    assert.equal(table.length, rows.length);
    const json = JSON.parse(readFileSync(join(out, "latest.json"), "utf8")) as { versusNwp11: Versus[] };
    assert.deepEqual(json.versusNwp11, versus(rows));
    assert.ok(json.versusNwp11.some((v) => v.workload === "JWT RS256" && v.concurrency === 64), "no RS256 line against nwp11");
    for (const v of json.versusNwp11) assert.ok(md.includes(`| ${v.workload} | ${v.concurrency} | ${v.hsmkey.toFixed(0)} |`), `${v.workload} missing from latest.md`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A measured row with only what versus() reads. */
function row(group: Row["group"], workload: string, concurrency: number, opsPerSec: number, errors = 0): Row {
  return {
    group, workload, concurrency, opsPerSec, errors, ops: opsPerSec, seconds: 1, p50Ms: 0, p99Ms: 0,
    loopDelayMaxMs: 0, loopDelayP99Ms: 0, loopDelayNetMaxMs: 0, machinePauseMaxMs: 0, ratioToRawSync: null,
  };
}

test("versus(): hsmkey over nwp11 at the highest concurrency both ran, beside raw-threads over nwp11", () => {
  const rows = [
    row("raw-threads", "JWT RS256", 2, 3170),
    row("hsmkey", "JWT RS256", 8, 2900), row("nwp11", "JWT RS256", 8, 1029, 6130),
    row("hsmkey", "JWT RS256", 64, 3061), row("nwp11", "JWT RS256", 64, 1089, 7006),
    row("hsmkey", "JWT HS256", 64, 38234), row("nwp11", "JWT HS256", 64, 11504, 1455),
    row("hsmkey", "JWT EdDSA", 64, 7606), { ...row("nwp11", "JWT EdDSA", 64, 0), unsupported: "Unrecognized name" },
  ];
  assert.deepEqual(versus(rows), [
    { workload: "JWT RS256", concurrency: 64, hsmkey: 3061, nwp11: 1089, nwp11Errors: 7006, ratio: 2.81, rawThreads: 2.91 },
    { workload: "JWT HS256", concurrency: 64, hsmkey: 38234, nwp11: 11504, nwp11Errors: 1455, ratio: 3.32, rawThreads: null },
  ]);
});

test("covered(): the part of a span the pauses cover, overlapping pauses counted once", () => {
  assert.equal(covered(0, 100, []), 0);
  assert.equal(covered(0, 100, [{ from: 10, to: 30 }]), 20);
  assert.equal(covered(0, 100, [{ from: -50, to: 10 }, { from: 90, to: 200 }]), 20);
  assert.equal(covered(0, 100, [{ from: 20, to: 60 }, { from: 10, to: 30 }, { from: 50, to: 70 }]), 60);
  assert.equal(covered(0, 100, [{ from: 10, to: 90 }, { from: 20, to: 30 }]), 80);
  assert.equal(covered(0, 100, [{ from: 100, to: 120 }]), 0);
});

/** Block this thread (the event loop) for `ms`. */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

test("the event-loop delay net of machine pauses: a block while the probe is also stopped is the machine's, one while it runs is ours", async () => {
  const machine = await MachinePauses.start();
  try {
    // The probe stopped for the whole block: as when the host pauses the whole machine.
    let loop = await LoopDelay.start(machine);
    process.kill(machine.pid, "SIGSTOP");
    block(120);
    process.kill(machine.pid, "SIGCONT");
    const paused = await loop.stop();
    assert.ok(paused.max >= 110, `histogram max ${paused.max}`);
    assert.ok(paused.machineMax! >= 110, `machine pause ${paused.machineMax}`);
    assert.ok(paused.netMax < 40, `net ${paused.netMax} ms: the machine's pause was counted as ours`);

    // The probe running: the block is this process's own.
    loop = await LoopDelay.start(machine);
    block(120);
    const ours = await loop.stop();
    assert.ok(ours.max >= 110, `histogram max ${ours.max}`);
    assert.ok(ours.netMax >= 80, `net ${ours.netMax} ms (machine pause ${ours.machineMax} ms): our own block was not counted`);
  } finally {
    machine.stop();
  }
});

test("a delay that began before the warm-up ended is still recorded after restart(), even in work that never yields", async () => {
  const loop = await LoopDelay.start(undefined);
  // Callers that fail at once and retry in microtasks: the event loop does not turn for 120 ms.
  const start = performance.now();
  let restarted = false;
  while (performance.now() < start + 120) {
    await Promise.resolve();
    if (!restarted && performance.now() >= start + 20) {
      loop.restart();
      restarted = true;
    }
  }
  const figures = await loop.stop();
  assert.ok(figures.max >= 100, `histogram max ${figures.max} ms for a 120 ms block`);
  assert.ok(figures.netMax >= 100, `net max ${figures.netMax} ms for a 120 ms block`);
  assert.equal(figures.machineMax, undefined);
});
