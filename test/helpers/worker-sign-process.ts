/**
 * Child-process script for test/multiprocess.test.ts. Opens the embedded token of HSMKEY_HOME
 * (shared with sibling processes) and, by argv[2]:
 *   sign <es> <rs>   signs <es> ES256 and <rs> RS256 JWTs concurrently (keys "ec" and "rsa")
 *   generate <n>     generates <n> ES256 keys labelled "gen-<pid>-<i>"
 *   list <n>         lists the keys <n> times, reporting each count
 *   reopen <n>       opens and closes the token <n> times (each a fresh C_Initialize and C_Login),
 *                    reporting how many opens failed, by message
 * and prints one JSON line on stdout: the result, or { error: { name, code, ckr, message } }.
 */
import * as jose from "jose";
import { installShim, openHsm } from "../../src/index.js";

async function reopen(times: number): Promise<unknown> {
  const failures: Record<string, number> = {};
  let opened = 0;
  for (let i = 0; i < times; i++) {
    try {
      const hsm = await openHsm({ home: process.env.HSMKEY_HOME! });
      opened++;
      await hsm.close();
    } catch (error) {
      const message = (error as Error).message;
      failures[message] = (failures[message] ?? 0) + 1;
    }
  }
  return { pid: process.pid, opened, failures };
}

async function main(): Promise<unknown> {
  const [mode, a = "0", b = "0"] = process.argv.slice(2);
  if (mode === "reopen") return reopen(Number(a));
  installShim();
  const hsm = await openHsm({ home: process.env.HSMKEY_HOME! });
  try {
    if (mode === "sign") {
      const ec = await hsm.getKey("ec", { alg: "ES256" });
      const rsa = await hsm.getKey("rsa", { alg: "RS256" });
      const sign = (key: typeof ec, alg: string, i: number) =>
        new jose.SignJWT({ pid: process.pid, i }).setProtectedHeader({ alg }).sign(key.privateKey!);
      const [es256, rs256] = await Promise.all([
        Promise.all(Array.from({ length: Number(a) }, (_, i) => sign(ec, "ES256", i))),
        Promise.all(Array.from({ length: Number(b) }, (_, i) => sign(rsa, "RS256", i))),
      ]);
      return { pid: process.pid, es256, rs256, leftovers: (await hsm.stats()).objects.session };
    }
    if (mode === "generate") {
      const made: { label: string; jwk: JsonWebKey; jwt: string }[] = [];
      for (let i = 0; i < Number(a); i++) {
        const label = `gen-${process.pid}-${i}`;
        const key = await hsm.generateKey("ES256", { label });
        const jwt = await new jose.SignJWT({ label }).setProtectedHeader({ alg: "ES256" }).sign(key.privateKey!);
        made.push({ label, jwk: key.exportPublic(), jwt });
      }
      return { pid: process.pid, made };
    }
    if (mode === "list") {
      const counts: number[] = [];
      const labels = new Set<string>();
      for (let i = 0; i < Number(a); i++) {
        const keys = await hsm.listKeys();
        counts.push(keys.length);
        for (const k of keys) if (k.label) labels.add(k.label);
      }
      return { pid: process.pid, counts, labels: [...labels] };
    }
    throw new Error(`unknown mode ${mode}`);
  } finally {
    await hsm.close();
  }
}

main().then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (error: { name?: string; code?: string; ckr?: string; message?: string }) => {
    process.stdout.write(`${JSON.stringify({ error: { name: error.name, code: error.code, ckr: error.ckr, message: error.message } })}\n`);
    process.exitCode = 1;
  },
);
