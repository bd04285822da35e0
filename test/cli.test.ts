/**
 * The hsmkey binary, driven as a user would: spawned processes against a fresh embedded token.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createPublicKey, generateKeyPairSync, verify as nodeVerify, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify } from "jose";

let home: string;
let dir: string;

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function hsmkey(args: string[], options: { env?: Record<string, string | undefined>; input?: string } = {}): Promise<Result> {
  const env: Record<string, string | undefined> = { ...process.env, HSMKEY_HOME: home, ...options.env };
  for (const name of ["HSMKEY_MODULE", "HSMKEY_TOKEN", "HSMKEY_SLOT", "HSMKEY_SERIAL", "HSMKEY_PIN_FILE", "HSMKEY_PIN", "SOFTHSM2_CONF"]) {
    if (!options.env || !(name in options.env)) delete env[name];
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: process.cwd(), env: env as NodeJS.ProcessEnv, timeout: 30_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

async function ok(pending: Promise<Result>): Promise<Result> {
  const r = await pending;
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  return r;
}

/** One line on stderr naming the problem, no stack. */
function oneLineError(r: Result, pattern: RegExp): void {
  assert.notEqual(r.status, 0);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^hsmkey: error: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

before(() => {
  home = mkdtempSync(join(tmpdir(), "hsmkey-cli-"));
  dir = mkdtempSync(join(tmpdir(), "hsmkey-cli-files-"));
});

after(() => {
  rmSync(home, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe("hsmkey command line", () => {
  test("init creates the embedded token, then shows it", async () => {
    const first = JSON.parse((await ok(hsmkey(["init", "--json"]))).stdout) as { home: string; token: string; created: boolean };
    assert.equal(first.home, home);
    assert.equal(first.token, "hsmkey-dev");
    assert.equal(first.created, true);
    const second = await ok(hsmkey(["init"]));
    assert.match(second.stdout, /^created:\s+no$/m);
    assert.match(second.stdout, new RegExp(`^token:\\s+hsmkey-dev$`, "m"));
    // The PIN is never printed.
    const pin = readFileSync(join(home, "user.pin"), "utf8").trim();
    assert.doesNotMatch(second.stdout, new RegExp(pin));
  });

  test("keys generate, list --json, show", async () => {
    const gen = JSON.parse((await ok(hsmkey(["keys", "generate", "--alg", "ES256", "--label", "signer", "--id", "0a0b", "--json"]))).stdout) as Record<string, unknown>;
    assert.equal(gen.label, "signer");
    assert.equal(gen.id, "0a0b");
    assert.equal(gen.type, "EC P-256");
    await ok(hsmkey(["keys", "generate", "--alg", "EdDSA", "--label", "ed"]));
    const [listed, tabled, showed] = await Promise.all([
      ok(hsmkey(["keys", "list", "--json"])),
      ok(hsmkey(["keys", "list"])),
      // A kid may start with "-", so it is given as --key=KID.
      ok(hsmkey(["keys", "show", `--key=${String(gen.kid)}`, "--json"])),
    ]);
    const list = JSON.parse(listed.stdout) as Record<string, unknown>[];
    assert.deepEqual(list.map((k) => k.label).sort(), ["ed", "signer"]);
    const signer = list.find((k) => k.label === "signer")!;
    assert.equal(signer.kid, gen.kid);
    assert.ok((signer.algorithms as string[]).includes("ES256"));
    const table = tabled.stdout;
    assert.match(table, /^LABEL\s+ID\s+KID\s+TYPE\s+ALGORITHMS\s+CERTIFICATE/);
    assert.match(table, new RegExp(`signer\\s+0a0b\\s+${gen.kid}\\s+EC P-256`));
    // show by kid gives the same key, with its public JWK
    const shown = JSON.parse(showed.stdout) as { label: string; jwk: JsonWebKey & { kid: string } };
    assert.equal(shown.label, "signer");
    assert.equal(shown.jwk.kid, gen.kid);
    assert.equal(shown.jwk.crv, "P-256");
    assert.equal(shown.jwk.d, undefined);
  });

  test("jwt sign then verify (by the binary, by jose with the JWKS, and by node:crypto)", async () => {
    const jwt = (await ok(hsmkey(["jwt", "sign", "--key", "signer", "--claims", '{"scope":"read"}', "--exp", "1h", "--iss", "https://issuer.test", "--aud", "api", "--sub", "alice"]))).stdout.trim();
    const header = decodeProtectedHeader(jwt);
    assert.equal(header.alg, "ES256");
    const claims = decodeJwt(jwt);
    assert.equal(claims.scope, "read");
    assert.equal(claims.sub, "alice");
    assert.equal(claims.exp! - claims.iat!, 3600);

    const [h, p, s] = jwt.split(".");
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, scope: "admin" })).toString("base64url")}.${s}`;
    const [verifiedRun, jwksRun, edRun, bad, wrongAud] = await Promise.all([
      ok(hsmkey(["jwt", "verify", jwt, "--iss", "https://issuer.test", "--aud", "api", "--json"])),
      ok(hsmkey(["jwks"])),
      ok(hsmkey(["jwt", "sign", "--key", "ed", "--claims", "{}"])),
      hsmkey(["jwt", "verify", tampered]),
      hsmkey(["jwt", "verify", jwt, "--aud", "other"]),
    ]);
    const verified = JSON.parse(verifiedRun.stdout) as { valid: boolean; payload: { scope: string } };
    assert.equal(verified.valid, true);
    assert.equal(verified.payload.scope, "read");

    const jwks = JSON.parse(jwksRun.stdout) as { keys: (JsonWebKey & { kid: string })[] };
    assert.equal(jwks.keys.length, 2);
    for (const k of jwks.keys) assert.equal(k.d, undefined);
    const jwk = jwks.keys.find((k) => k.kid === header.kid)!;
    const { payload } = await jwtVerify(jwt, await importJWK(jwk, "ES256"), { issuer: "https://issuer.test", audience: "api" });
    assert.equal(payload.sub, "alice");
    assert.equal(nodeVerify("sha256", Buffer.from(`${h}.${p}`), { key: createPublicKey({ key: jwk as never, format: "jwk" }), dsaEncoding: "ieee-p1363" }, Buffer.from(s!, "base64url")), true);

    // EdDSA through the kid-less path: the key set picks the key by kid.
    const ed = edRun.stdout.trim();
    assert.equal(decodeProtectedHeader(ed).alg, "EdDSA");
    await ok(hsmkey(["jwt", "verify", "-"], { input: ed }));

    // A tampered token does not verify: exit code 1.
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /invalid JWT: .*signature verification failed/);
    // Wrong audience: exit code 1.
    assert.equal(wrongAud.status, 1);
  });

  test("jwe encrypt then decrypt with an RSA key", async () => {
    await ok(hsmkey(["keys", "generate", "--alg", "RSA-OAEP", "--label", "enc"]));
    const jwe = (await ok(hsmkey(["jwe", "encrypt", "secret message", "--key", "enc"]))).stdout.trim();
    assert.equal(jwe.split(".").length, 5);
    assert.deepEqual(decodeProtectedHeader(jwe).alg, "RSA-OAEP");
    const plain = (await ok(hsmkey(["jwe", "decrypt", "-"], { input: jwe }))).stdout;
    assert.equal(plain, "secret message");
  });

  test("csr verified by openssl; cert self-sign is stored, exported, and appears in the JWKS as x5c", async () => {
    const csrPath = join(dir, "signer.csr");
    // Processes that write token objects run alone (SoftHSM's file store is not safe for concurrent writers and readers).
    await ok(hsmkey(["csr", "--key", "signer", "--subject", "CN=api.example.com, O=Example", "--san", "dns:api.example.com", "--out", csrPath]));
    const selfSigned = await ok(hsmkey(["cert", "self-sign", "--key", "signer", "--subject", "CN=signer", "--days", "10"]));
    const req = spawnSync("openssl", ["req", "-in", csrPath, "-verify", "-noout", "-text"], { encoding: "utf8" });
    assert.equal(req.status, 0, req.stderr);
    assert.match(req.stdout + req.stderr, /verify OK/i);
    assert.match(req.stdout, /CN ?= ?api\.example\.com/);
    assert.match(req.stdout, /DNS:api\.example\.com/);

    const pem = selfSigned.stdout;
    const cert = new X509Certificate(pem);
    assert.equal(cert.subject, "CN=signer");
    assert.equal(cert.verify(cert.publicKey), true);
    const [exportRun, jwksRun, listRun] = await Promise.all([
      ok(hsmkey(["cert", "export", "--key", "signer"])),
      ok(hsmkey(["jwks", "--key", "signer"])),
      ok(hsmkey(["keys", "list", "--json"])),
    ]);
    const exported = exportRun.stdout;
    assert.equal(new X509Certificate(exported).fingerprint256, cert.fingerprint256);
    const jwks = JSON.parse(jwksRun.stdout) as { keys: { x5c?: string[]; "x5t#S256"?: string }[] };
    assert.equal(jwks.keys.length, 1);
    assert.deepEqual(jwks.keys[0]!.x5c, [cert.raw.toString("base64")]);
    const list = JSON.parse(listRun.stdout) as { label: string; certificate?: string }[];
    assert.equal(list.find((k) => k.label === "signer")!.certificate, "CN=signer");

    // cert import: a certificate for another key is refused; a corrupt one too.
    const otherPath = join(dir, "other.pem");
    writeFileSync(otherPath, pem);
    oneLineError(await hsmkey(["cert", "import", otherPath, "--key", "ed"]), /another public key/);
    await ok(hsmkey(["cert", "import", otherPath, "--key", "signer"]));
  });

  test("keys import of a PKCS#8 PEM and a private JWK; the imported key signs", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const pemPath = join(dir, "p384.pem");
    writeFileSync(pemPath, privateKey.export({ format: "pem", type: "pkcs8" }));
    const imported = JSON.parse((await ok(hsmkey(["keys", "import", pemPath, "--label", "imported", "--json"]))).stdout) as { type: string; kid: string };
    assert.equal(imported.type, "EC P-384");
    const jwt = (await ok(hsmkey(["jwt", "sign", "--key", "imported"]))).stdout.trim();
    assert.equal(decodeProtectedHeader(jwt).alg, "ES384");
    await jwtVerify(jwt, publicKey);

    const ed = generateKeyPairSync("ed25519");
    const jwkPath = join(dir, "ed.jwk");
    writeFileSync(jwkPath, JSON.stringify(ed.privateKey.export({ format: "jwk" })));
    const edImported = JSON.parse((await ok(hsmkey(["keys", "import", jwkPath, "--label", "ed-imported", "--json"]))).stdout) as { type: string };
    assert.equal(edImported.type, "OKP Ed25519");
  });

  test("a value that starts with a dash (as one kid in 64 does) is refused with the way to give it", async () => {
    const r = await hsmkey(["keys", "show", "--key", "-Ab3"]);
    assert.equal(r.status, 2);
    oneLineError(r, /argument is ambiguous.*'--key=-XYZ'/);
  });

  test("keys delete needs --yes without a terminal, then removes the key", async () => {
    oneLineError(await hsmkey(["keys", "delete", "--key", "imported"]), /without --yes/);
    const r = JSON.parse((await ok(hsmkey(["keys", "delete", "--key", "imported", "--yes", "--json"]))).stdout) as { objects: number };
    assert.equal(r.objects, 2);
    const list = JSON.parse((await ok(hsmkey(["keys", "list", "--json"]))).stdout) as { label: string }[];
    assert.equal(list.some((k) => k.label === "imported"), false);
  });

  test("info lists the token and a capability matrix found by a live probe", async () => {
    const [infoJson, infoText, noProbe] = await Promise.all([ok(hsmkey(["info", "--json"])), ok(hsmkey(["info"])), ok(hsmkey(["info", "--no-probe", "--json"]))]);
    type Capability = { alg: string; supported: boolean; probed: boolean; mechanism: boolean; mechanisms: string[]; reason?: string };
    const info = JSON.parse(infoJson.stdout) as { token: { label: string; embedded: boolean }; capabilities: Capability[] };
    assert.equal(info.token.label, "hsmkey-dev");
    assert.equal(info.token.embedded, true);
    const cap = (alg: string) => info.capabilities.find((c) => c.alg === alg)!;
    for (const alg of ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256", "RSA-OAEP", "ECDH-ES", "ECDH-ES+A256KW", "A256KW", "A256GCMKW", "dir"]) {
      assert.equal(cap(alg).supported, true, `${alg}: ${cap(alg).reason}`);
      assert.equal(cap(alg).probed, true);
    }
    assert.ok(cap("ES256").mechanisms.includes("CKM_ECDSA"));
    // SoftHSM lists CKM_RSA_PKCS_OAEP, but only SHA-1 works: the mechanism is there, the algorithm is not.
    assert.equal(cap("RSA-OAEP-256").mechanism, true);
    assert.equal(cap("RSA-OAEP-256").supported, false);
    assert.match(cap("RSA-OAEP-256").reason!, /RSA-OAEP-256|RSA-OAEP with SHA-256/);
    assert.match(infoText.stdout, /EdDSA\s+sig\s+OKP\s+yes\s+CKM_EDDSA\s+probed/);
    const listed = JSON.parse(noProbe.stdout) as { capabilities: Capability[] };
    assert.equal(listed.capabilities.every((c) => !c.probed), true);
  });

  test("bad input: wrong PIN, unknown key, unknown algorithm, missing module, corrupt PEM, unknown option", async () => {
    const pin = readFileSync(join(home, "user.pin"), "utf8").trim();
    const badPem = join(dir, "corrupt.pem");
    writeFileSync(badPem, "-----BEGIN PRIVATE KEY-----\nMIIBbroken!!\n-----END PRIVATE KEY-----\n");
    const badCert = join(dir, "corrupt-cert.pem");
    writeFileSync(badCert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    // Independent processes: run them at once.
    const [wrong, right, unknown, alg, module, pem, cert, option, debug] = await Promise.all([
      hsmkey(["keys", "list"], { env: { HSMKEY_PIN: "wrong-pin-1234" } }),
      hsmkey(["keys", "list"], { env: { HSMKEY_PIN: pin } }),
      hsmkey(["jwt", "sign", "--key", "no-such-key"]),
      hsmkey(["keys", "generate", "--alg", "ES999"]),
      hsmkey(["info", "--module", "/nonexistent/libpkcs11.so"]),
      hsmkey(["keys", "import", badPem]),
      hsmkey(["cert", "import", badCert, "--key", "signer"]),
      hsmkey(["keys", "list", "--pin", "1234"]),
      hsmkey(["jwt", "sign", "--key", "no-such-key", "--debug"]),
    ]);

    assert.equal(wrong.status, 3);
    oneLineError(wrong, /CKR_PIN_INCORRECT/);
    assert.doesNotMatch(wrong.stderr + wrong.stdout, /wrong-pin-1234/);
    assert.doesNotMatch(wrong.stderr, new RegExp(pin));
    // The right PIN from the environment works.
    assert.equal(right.status, 0, right.stderr);
    assert.match(right.stdout, /signer/);

    assert.equal(unknown.status, 4);
    oneLineError(unknown, /no-such-key/);

    assert.equal(alg.status, 5);
    oneLineError(alg, /ES999/);

    assert.equal(module.status, 3);
    oneLineError(module, /\/nonexistent\/libpkcs11\.so/);

    assert.equal(pem.status, 2);
    oneLineError(pem, /PKCS#8/);

    assert.equal(cert.status, 2);
    oneLineError(cert, /certificate/i);

    assert.equal(option.status, 2);
    oneLineError(option, /Unknown option '--pin'/);

    // --debug adds the stack.
    assert.equal(debug.status, 4);
    assert.match(debug.stderr, /\n\s+at /);
  });

  test("token selection like the library: --module/--token with --pin-file, --uri; no PIN and no terminal is an error", async () => {
    const pin = readFileSync(join(home, "user.pin"), "utf8").trim();
    const pinFile = join(dir, "pin.txt");
    writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
    const env = { SOFTHSM2_CONF: join(home, "softhsm2.conf") };
    const module = "/usr/lib/softhsm/libsofthsm2.so";
    const [withFile, withUri, withoutPin] = await Promise.all([
      hsmkey(["keys", "list", "--json", "--module", module, "--token", "hsmkey-dev", "--pin-file", pinFile], { env }),
      hsmkey(["keys", "list", "--json", "--uri", `pkcs11:token=hsmkey-dev?module-path=${module}&pin-source=file:${pinFile}`], { env }),
      hsmkey(["keys", "list", "--module", module, "--token", "hsmkey-dev"], { env }),
    ]);
    assert.equal(withFile.status, 0, withFile.stderr);
    assert.ok((JSON.parse(withFile.stdout) as { label: string }[]).some((k) => k.label === "signer"));
    assert.equal(withUri.status, 0, withUri.stderr);
    const kids = (r: { stdout: string }) => (JSON.parse(r.stdout) as { kid: string }[]).map((k) => k.kid).sort();
    assert.deepEqual(kids(withUri), kids(withFile));
    assert.equal(withoutPin.status, 3);
    oneLineError(withoutPin, /requires a PIN/);
  });

  test("on a terminal, the PIN is asked for and not echoed; keys delete asks for confirmation", async () => {
    // `script` gives the child a pseudo-terminal; what it prints is what a person would see.
    const pin = readFileSync(join(home, "user.pin"), "utf8").trim();
    const viaTerminal = (args: string, typed: string[]) =>
      new Promise<Result>((resolve, reject) => {
        const env: NodeJS.ProcessEnv = { ...process.env, SOFTHSM2_CONF: join(home, "softhsm2.conf") };
        for (const name of ["HSMKEY_MODULE", "HSMKEY_TOKEN", "HSMKEY_PIN", "HSMKEY_PIN_FILE", "HSMKEY_HOME"]) delete env[name];
        const command = `${process.execPath} --import tsx src/cli/main.ts --module /usr/lib/softhsm/libsofthsm2.so --token hsmkey-dev ${args}`;
        const child = spawn("script", ["-qec", command, "/dev/null"], { cwd: process.cwd(), env, timeout: 30_000 });
        let stdout = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => {
          stdout += d;
          // Answer each prompt as it appears, as a person would.
          if (/(PIN: |\[y\/N\] (\x1b\[\d+G)?)$/.test(stdout) && typed.length) child.stdin.write(typed.shift()!);
        });
        child.on("error", reject);
        child.on("close", (status) => resolve({ status, stdout, stderr: "" }));
      });
    const listed = await viaTerminal("keys list --json", [`${pin}\r`]);
    assert.equal(listed.status, 0, listed.stdout);
    assert.match(listed.stdout, /PIN: /);
    assert.ok(!listed.stdout.includes(pin), "the PIN was echoed");
    assert.match(listed.stdout, /"label": "signer"/);

    await ok(hsmkey(["keys", "generate", "--alg", "ES256", "--label", "to-delete"], { env: { HSMKEY_PIN: pin } }));
    const declined = await viaTerminal("keys delete --key to-delete", [`${pin}\r`, "n\r"]);
    assert.notEqual(declined.status, 0, JSON.stringify(declined.stdout));
    assert.match(declined.stdout, /\[y\/N\]/);
    assert.match((await ok(hsmkey(["keys", "list"], { env: { HSMKEY_PIN: pin } }))).stdout, /to-delete/);
    const confirmed = await viaTerminal("keys delete --key to-delete", [`${pin}\r`, "y\r"]);
    assert.equal(confirmed.status, 0, confirmed.stdout);
    assert.match(confirmed.stdout, /deleted: /);
    assert.doesNotMatch((await ok(hsmkey(["keys", "list"], { env: { HSMKEY_PIN: pin } }))).stdout, /to-delete/);
  });

  test("--help everywhere", async () => {
    const [mainHelp, generateHelp, certHelp, unknown] = await Promise.all([
      ok(hsmkey(["--help"])),
      ok(hsmkey(["keys", "generate", "--help"])),
      ok(hsmkey(["cert", "--help"])),
      hsmkey(["frobnicate"]),
    ]);
    const main = mainHelp.stdout;
    for (const c of ["init", "info", "keys list", "keys generate", "jwks", "jwt sign", "jwe decrypt", "csr", "cert self-sign", "cert export"]) {
      assert.match(main, new RegExp(`\\n  ${c} `));
    }
    assert.match(generateHelp.stdout, /^Usage: hsmkey keys generate --alg ALG/);
    assert.match(certHelp.stdout, /cert self-sign/);
    assert.equal(unknown.status, 2);
    oneLineError(unknown, /Unknown command 'frobnicate'/);
  });
});
