/**
 * The package as npm would publish it, not the sources the other tests run. A fresh build is packed
 * (`npm pack --dry-run` lists what would ship) and then used as a consumer uses it: imported by its
 * name, its `hsmkey` bin run, its declarations type-checked by a strict TypeScript project.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createPublicKey, verify as nodeVerify, X509Certificate } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { builtinModules, createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, normalize } from "node:path";
import { promisify } from "node:util";

const root = join(import.meta.dirname, "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  name: string;
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  dependencies: Record<string, string>;
};
const run = promisify(execFile);
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

let dir: string;
/** The package's folder: package.json, README, bin/ and a fresh build in dist/, as `npm pack` sees it. */
let pkgDir: string;
/** A consumer project that depends on the package. */
let consumer: string;
/** The paths `npm pack` would ship. */
let shipped: Set<string>;
/** The text of every shipped .js and .d.ts file, by path. */
const code = new Map<string, string>();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "hsmkey-package-"));
  pkgDir = join(dir, "hsmkey");
  mkdirSync(pkgDir);
  for (const name of ["package.json", "README.md", "LICENSE", "bin"]) cpSync(join(root, name), join(pkgDir, name), { recursive: true });
  await run(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", join(pkgDir, "dist")]);
  symlinkSync(join(root, "node_modules"), join(pkgDir, "node_modules"));

  // npm's own script when the tests run under `npm test`; else where Node's installers put it.
  const npmCli = process.env.npm_execpath ?? join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "bin", "npm-cli.js");
  const { stdout } = await run(process.execPath, [npmCli, "pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: pkgDir });
  const [packed] = JSON.parse(stdout) as { files: { path: string }[] }[];
  shipped = new Set(packed!.files.map((f) => f.path));
  for (const path of shipped) if (/\.(js|d\.ts)$/.test(path)) code.set(path, readFileSync(join(pkgDir, path), "utf8"));

  consumer = join(dir, "consumer");
  mkdirSync(join(consumer, "node_modules"), { recursive: true });
  symlinkSync(pkgDir, join(consumer, "node_modules", pkg.name));
  for (const name of ["jose", "@types"]) {
    mkdirSync(dirname(join(consumer, "node_modules", name)), { recursive: true });
    symlinkSync(join(root, "node_modules", name), join(consumer, "node_modules", name));
  }
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", type: "module", private: true }));
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** The module specifiers a file imports or re-exports, statically or dynamically. */
function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["']([^"']+)["']/gm)) out.push(m[1]!);
  return out;
}

test("what ships: the exports, the bin and every file they import, and nothing of the repository's tests, bench or token home", () => {
  for (const [entry, target] of Object.entries(pkg.exports)) {
    for (const path of typeof target === "string" ? [target] : Object.values(target)) {
      assert.ok(shipped.has(normalize(path)), `exports["${entry}"] names ${path}, which does not ship`);
    }
  }
  for (const path of Object.values(pkg.bin)) assert.ok(shipped.has(normalize(path)), `bin ${path} does not ship`);
  for (const path of ["package.json", "README.md", "LICENSE"]) assert.ok(shipped.has(path), `${path} does not ship`);
  assert.ok(code.size > 50, `only ${code.size} code files ship`);
  for (const [path, text] of code) {
    for (const spec of specifiers(text).filter((s) => s.startsWith("."))) {
      const target = join(dirname(path), spec);
      const candidates = path.endsWith(".d.ts") ? [target, target.replace(/\.js$/, ".d.ts")] : [target];
      assert.ok(candidates.some((c) => shipped.has(c)), `${path} imports ${spec}, which does not ship`);
    }
  }
  const strays = [...shipped].filter((p) => /^(test|bench|scratch|examples|scripts|src|\.hsmkey|\.ci)\/|\.pin$|tsconfig|softhsm2\.conf/.test(p));
  assert.deepEqual(strays, []);
});

test("what ships imports only Node's built-in modules and the package's declared dependencies, never a devDependency", () => {
  const builtins = new Set(builtinModules);
  const used = new Set<string>();
  for (const text of code.values()) {
    for (const spec of specifiers(text).filter((s) => !s.startsWith("."))) {
      if (spec.startsWith("node:") || builtins.has(spec)) continue;
      const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
      used.add(name);
    }
  }
  const undeclared = [...used].filter((name) => !(name in pkg.dependencies));
  assert.deepEqual(undeclared, [], "imported by what ships but not in dependencies");
  assert.ok(used.has("pkcs11js") && used.has("jose"), `the scan found ${[...used].join(", ")}`);
});

test("a consumer imports the package by name, signs a JWT and makes a certificate in the token; Node's crypto verifies both", async () => {
  const script = join(consumer, "use.mjs");
  writeFileSync(
    script,
    `import { openHsm, installShim } from "hsmkey";
import { createSelfSignedCertificate } from "hsmkey/x509";
import { SignJWT } from "jose";
const hsm = await openHsm();
try {
  const key = await hsm.generateKey("ES256", { label: "package-test" });
  installShim();
  const jwt = await new SignJWT({ sub: "consumer" }).setProtectedHeader({ alg: "ES256", kid: key.kid }).sign(key.privateKey);
  const certificate = await createSelfSignedCertificate(key, { subject: "CN=package-test" });
  console.log(JSON.stringify({ jwt, jwk: key.exportPublic(), pem: certificate.toString("pem") }));
} finally {
  await hsm.close();
}
`,
  );
  const home = join(dir, "home");
  const env: NodeJS.ProcessEnv = { ...process.env, HSMKEY_HOME: home };
  for (const name of ["HSMKEY_MODULE", "HSMKEY_TOKEN", "HSMKEY_PIN", "HSMKEY_PIN_FILE", "SOFTHSM2_CONF"]) delete env[name];
  const { stdout } = await run(process.execPath, [script], { cwd: consumer, env, timeout: 60_000 });
  const { jwt, jwk, pem } = JSON.parse(stdout) as { jwt: string; jwk: import("node:crypto").JsonWebKey & { kid: string }; pem: string };

  const publicKey = createPublicKey({ key: jwk, format: "jwk" });
  const [header, payload, signature] = jwt.split(".");
  assert.equal(JSON.parse(Buffer.from(header!, "base64url").toString()).kid, jwk.kid);
  assert.equal(nodeVerify("sha256", Buffer.from(`${header}.${payload}`), { key: publicKey, dsaEncoding: "ieee-p1363" }, Buffer.from(signature!, "base64url")), true);
  const certificate = new X509Certificate(pem);
  assert.equal(certificate.subject, "CN=package-test");
  assert.equal(certificate.verify(publicKey), true);
  assert.ok(certificate.publicKey.equals(publicKey));
});

test("the shipped bin runs the command line from the build", async () => {
  const { stdout } = await run(process.execPath, [join(pkgDir, pkg.bin.hsmkey!), "--help"], { cwd: consumer });
  for (const command of ["keys generate", "keys list", "jwks", "jwt sign", "cert import"]) assert.match(stdout, new RegExp(`\\b${command}\\b`), command);
});

test("a strict TypeScript project type-checks against the shipped declarations, and they are precise (a wrong call is an error)", async () => {
  writeFileSync(
    join(consumer, "use.mts"),
    `import { openHsm, HsmError, type HsmKey, type HsmOptions } from "hsmkey";
import { createCsr } from "hsmkey/x509";
const options: HsmOptions = { maxSessions: 2 };
const hsm = await openHsm(options);
const key: HsmKey = await hsm.getKey({ label: "k" });
const privateKey: CryptoKey | undefined = key.privateKey;
const kid: string = key.kid;
const csr: Promise<unknown> = createCsr(key, { subject: "CN=x" });
// @ts-expect-error: an HsmKey's kid is a string (were the declarations loose, this line would not be an error)
const wrong: number = key.kid;
// @ts-expect-error: generateKey wants a JOSE algorithm name
await hsm.generateKey(42);
export { privateKey, kid, csr, wrong, HsmError };
`,
  );
  writeFileSync(
    join(consumer, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, module: "node16", moduleResolution: "node16", target: "ES2022",
        lib: ["ES2022", "DOM"], types: ["node"], skipLibCheck: true,
      },
      files: ["use.mts"],
    }),
  );
  const result = await run(process.execPath, [tsc, "-p", consumer]).catch((error: { stdout: string }) => ({ stdout: error.stdout, failed: true }));
  assert.equal("failed" in result, false, result.stdout);
});
