/**
 * Several processes sharing one token directory (the same embedded SoftHSM token, same
 * HSMKEY_HOME), as several instances of a service on one host would: three processes sign
 * concurrently and every signature verifies with node:crypto; one process generates keys while
 * another lists them, and both see a consistent token; processes that open the token while others
 * log in always find it, and never create a second one.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as jose from "jose";
import { installShim, type Hsm, type HsmKey } from "../src/index.js";
import { freshHsm, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, nodeVerifyCompact } from "./helpers/native.js";

let fixture: Fixture;
let hsm: Hsm;
let ec: HsmKey;
let rsa: HsmKey;
let uninstall: () => void;

const SCRIPT = fileURLToPath(new URL("./helpers/worker-sign-process.ts", import.meta.url));

interface ChildError {
  error: { name: string; code?: string; ckr?: string; message: string };
}

/** Run the child script with the shared HSMKEY_HOME; resolve with its exit code and parsed JSON line. */
function child<T>(...args: string[]): Promise<{ code: number | null; result: T | ChildError; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ["--import", "tsx", SCRIPT, ...args], {
      env: { ...process.env, HSMKEY_HOME: fixture.home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    proc.once("error", reject);
    proc.once("exit", (code) => {
      try {
        resolve({ code, result: JSON.parse(out.trim().split("\n").pop() ?? "") as T | ChildError, stderr: err });
      } catch {
        reject(new Error(`child ${args.join(" ")} exited ${code} without a JSON result: ${out}${err}`));
      }
    });
  });
}

function ok<T>(run: { code: number | null; result: T | ChildError; stderr: string }): T {
  assert.ok(!("error" in (run.result as object)), `child failed: ${JSON.stringify((run.result as ChildError).error)} ${run.stderr}`);
  assert.equal(run.code, 0, run.stderr);
  return run.result as T;
}

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  uninstall = installShim();
  ec = await hsm.generateKey("ES256", { label: "ec" });
  rsa = await hsm.generateKey("RS256", { label: "rsa" });
});

after(async () => {
  uninstall?.();
  await fixture?.close();
});

test("3 processes sign concurrently on one token directory: none fails, every signature verifies", async () => {
  interface Signed { pid: number; es256: string[]; rs256: string[]; leftovers: number }
  const runs = await Promise.all([0, 1, 2].map(() => child<Signed>("sign", "300", "20")));
  const pids = new Set<number>();
  for (const run of runs) {
    const r = ok(run);
    pids.add(r.pid);
    assert.equal(r.es256.length, 300);
    assert.equal(r.rs256.length, 20);
    assert.equal(r.leftovers, 0);
    for (const [i, jwt] of r.es256.entries()) {
      assert.equal(nodeVerifyCompact(jwt, ec.exportPublic()), true, `ES256 ${i} of ${r.pid}`);
      assert.deepEqual(jose.decodeJwt(jwt), { pid: r.pid, i });
    }
    for (const jwt of r.rs256) assert.equal(nodeVerifyCompact(jwt, rsa.exportPublic()), true);
  }
  assert.equal(pids.size, 3);
  // This process, which had the token open all along, still signs.
  const jwt = await new jose.SignJWT({}).setProtectedHeader({ alg: "ES256" }).sign(ec.privateKey!);
  assert.equal(nodeVerifyCompact(jwt, ec.exportPublic()), true);
  await assertNoLeftovers(hsm);
});

test("one process generates keys while another lists them; both see a consistent token, and so does this one", async () => {
  interface Generated { pid: number; made: { label: string; jwk: JsonWebKey; jwt: string }[] }
  interface Listed { pid: number; counts: number[]; labels: string[] }
  const before = (await hsm.listKeys()).length;
  assert.equal(before, 2);
  const [gen, list] = await Promise.all([child<Generated>("generate", "5"), child<Listed>("list", "20")]);
  const generated = ok(gen);
  const listed = ok(list);
  assert.equal(generated.made.length, 5);
  for (const m of generated.made) assert.equal(nodeVerifyCompact(m.jwt, m.jwk), true, m.label);
  // The lister saw between 2 and 7 keys each time, never fewer than before, and counts never went down.
  assert.equal(listed.counts.length, 20);
  for (const [i, c] of listed.counts.entries()) {
    assert.ok(c >= before && c <= before + 5, `count ${c}`);
    if (i > 0) assert.ok(c >= listed.counts[i - 1]!, `counts went down: ${listed.counts.join(",")}`);
  }
  for (const l of listed.labels) assert.ok(["ec", "rsa", ...generated.made.map((m) => m.label)].includes(l), `unexpected label ${l}`);
  // This process sees the new keys, and they sign to signatures the child's public JWKs verify.
  const keys = await hsm.listKeys();
  assert.equal(keys.length, before + 5);
  for (const m of generated.made) {
    const key = await hsm.getKey(m.label, { alg: "ES256" });
    assert.deepEqual({ x: key.exportPublic().x, y: key.exportPublic().y }, { x: m.jwk.x, y: m.jwk.y });
    const jwt = await new jose.SignJWT({}).setProtectedHeader({ alg: "ES256" }).sign(key.privateKey!);
    assert.equal(nodeVerifyCompact(jwt, m.jwk), true);
  }
  await assertNoLeftovers(hsm);
});

test("4 processes open and close the token 40 times each while the others log in: it is always found, never created twice, its PIN unchanged", async () => {
  // SoftHSM rewrites the token's file on every C_Login; a process initialising at that moment used
  // to miss the token ("No token with label"), and the embedded token was then created a second time.
  interface Reopened { pid: number; opened: number; failures: Record<string, number> }
  const pin = readFileSync(join(fixture.home, "user.pin"), "utf8");
  const runs = await Promise.all([0, 1, 2, 3].map(() => child<Reopened>("reopen", "40")));
  for (const run of runs) assert.deepEqual({ ...ok(run), pid: 0 }, { pid: 0, opened: 40, failures: {} });
  const tokenDirs = readdirSync(join(fixture.home, "tokens"), { withFileTypes: true }).filter((e) => e.isDirectory());
  assert.equal(tokenDirs.length, 1);
  assert.equal(readFileSync(join(fixture.home, "user.pin"), "utf8"), pin);
  const jwt = await new jose.SignJWT({}).setProtectedHeader({ alg: "ES256" }).sign(ec.privateKey!);
  assert.equal(nodeVerifyCompact(jwt, ec.exportPublic()), true);
  await assertNoLeftovers(hsm);
});
