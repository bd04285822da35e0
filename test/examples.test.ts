/**
 * Runs every example in examples/ (and the `npm run demo` script) as a child process against one
 * fresh embedded SoftHSM2 token, and checks each exits 0 and prints what it claims to have checked.
 * Each example creates the keys it needs, so the order matters little; they share one token so
 * that the "find the key on later runs" path is exercised too.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const examplesDir = join(dirname(fileURLToPath(import.meta.url)), "..", "examples");

/** Each example, and lines its stdout must contain. */
const EXPECTED: Record<string, RegExp[]> = {
  "demo.ts": [/embedded DEVELOPMENT token/, /RS256 .* verified/, /ES256 .* verified/, /EdDSA .* verified/, /decrypted: "Confidential data"/, /role=admin/, /kty: "OKP", alg: "EdDSA"/, /Demo complete: all checks passed/],
  "basic-signing.ts": [/compact JWS \(RS256/, /basic signing: both signatures verified OK/],
  "multiple-signatures.ts": [/general JWS with 2 signatures: RS256, ES256/, /multiple signatures: OK/],
  "verification.ts": [/RS256: verified with the HSM public key and with the exported JWK/, /ES256: tampered token rejected/, /verification: OK/],
  "encryption.ts": [/RSA-OAEP \+ A256GCM .*decrypted in the token OK/, /RSA-OAEP \+ A256CBC-HS512 .*decrypted in the token OK/, /encryption: OK/],
  "decryption.ts": [/decrypted: "Secret for the token holder"/, /ECDH-ES\+A128KW/, /tampered JWE rejected/, /decryption: OK/],
  "hybrid-encryption.ts": [/alg: "RSA-OAEP", use: "enc"/, /token decrypted: "Secret message"/, /hybrid encryption: OK/],
  "signed-jwt.ts": [/sub=user123 iss=https:\/\/auth\.example\.com aud=https:\/\/api\.example\.com exp in 3600s/, /signed JWT: OK/],
  "encrypted-jwt.ts": [/sensitive_data=confidential/, /encrypted JWT: OK/],
  "nested-jwt.ts": [/decrypted \(RSA-OAEP\) then verified \(ES256\): sub=user123 role=admin/, /nested JWT: OK/],
  "key-set.ts": [/kids rsa-signing, ec-signing/, /ES256 JWT \(kid ec-signing\) verified with keySet\.resolver and with the published JWKS/, /key set: OK/],
  "key-rotation.ts": [/old token \(kid key-v1, RS256\) and new token \(kid key-v2, RS384\) both verify/, /old token refused, new token still verifies; JWKS: key-v2/, /key rotation: OK/],
  "error-handling.ts": [/\[ERR_HSM_KEY_NOT_FOUND\] .*nonexistent/, /\[ERR_HSM_KEY_EXPORT\]/, /InvalidAccessError/, /ERR_HSM_DUPLICATE_KID/, /error handling: OK/],
  "oauth-private-key-jwt.ts": [/client_assertion_type, client_assertion/, /verified: iss=c1 sub=c1 aud=https:\/\/as\.example\.com/, /private_key_jwt: OK/],
  "x509-csr.ts": [/csr\.verify\(\): true/, /x509 CSR: OK/],
};

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runExample(file: string, home: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, HSMKEY_HOME: home };
  for (const name of ["HSMKEY_MODULE", "HSMKEY_TOKEN", "HSMKEY_SERIAL", "HSMKEY_SLOT", "HSMKEY_PIN", "HSMKEY_PIN_FILE", "HSMKEY_LIBRARY_PARAMETERS", "SOFTHSM2_CONF"]) {
    delete env[name];
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(examplesDir, file)], { env, cwd: join(examplesDir, ".."), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

test("every example file has an expectation here", () => {
  const files = readdirSync(examplesDir).filter((f) => f.endsWith(".ts") && statSync(join(examplesDir, f)).isFile());
  assert.deepEqual(files.sort(), Object.keys(EXPECTED).sort());
});

test("the examples run against the embedded token", async (t) => {
  const home = mkdtempSync(join(tmpdir(), "hsmkey-examples-"));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  let pin: string | undefined;
  for (const [file, patterns] of Object.entries(EXPECTED)) {
    await t.test(file, async () => {
      const run = await runExample(file, home);
      assert.equal(run.code, 0, `${file} exited ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`);
      for (const pattern of patterns) assert.match(run.stdout, pattern, `${file}: stdout lacks ${pattern}`);
      pin ??= readFileSync(join(home, "user.pin"), "utf8").trim();
      assert.ok(pin.length >= 4, "the embedded token has a user PIN");
      assert.equal(run.stdout.includes(pin), false, `${file} printed the PIN`);
      assert.equal(run.stderr.includes(pin), false, `${file} printed the PIN on stderr`);
    });
  }
});
