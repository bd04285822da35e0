/**
 * Libraries other than jose, unmodified, through the shim, with keys on a fresh SoftHSM2 token:
 * oauth4webapi's PrivateKeyJwt (which checks `instanceof CryptoKey`) and an @peculiar/x509 CSR
 * signed in the token, checked by openssl.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import "reflect-metadata"; // @peculiar/x509 requires a Reflect metadata polyfill, loaded first
import * as oauth from "oauth4webapi";
import * as x509 from "@peculiar/x509";
import { installShim, type Hsm, type HsmKey } from "../src/index.js";
import { freshHsm, type Fixture } from "./helpers/token.js";
import { assertNoLeftovers, nodeVerifyCompact } from "./helpers/native.js";

let fixture: Fixture;
let hsm: Hsm;
let uninstall: () => void;
let rsa: HsmKey;
let ec: HsmKey;

before(async () => {
  fixture = await freshHsm();
  hsm = fixture.hsm;
  uninstall = installShim();
  rsa = await hsm.generateKey("PS256", { label: "interop-rsa" });
  ec = await hsm.generateKey("ES256", { label: "interop-ec" });
  x509.cryptoProvider.set(globalThis.crypto);
});

after(async () => {
  await assertNoLeftovers(hsm);
  uninstall();
  await fixture.close();
});

for (const [name, keyOf, alg] of [["ES256", () => ec, "ES256"], ["PS256", () => rsa, "PS256"]] as const) {
  test(`oauth4webapi PrivateKeyJwt (${name}): the client assertion is signed in the token and verifies with node:crypto`, async () => {
    const key = keyOf();
    const as: oauth.AuthorizationServer = { issuer: "https://as.example", token_endpoint: "https://as.example/token" };
    const client: oauth.Client = { client_id: "client-1" };
    let body: URLSearchParams | undefined;
    const fetchStub = async (_url: string, init: RequestInit) => {
      body = new URLSearchParams(init.body as string);
      return new Response(JSON.stringify({ access_token: "at", token_type: "bearer", expires_in: 60 }), { status: 200, headers: { "content-type": "application/json" } });
    };
    const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.PrivateKeyJwt({ key: key.privateKey!, kid: key.kid }), { scope: "api" }, {
      [oauth.customFetch]: fetchStub as never,
    });
    const result = await oauth.processClientCredentialsResponse(as, client, response);
    assert.equal(result.access_token, "at");
    assert.ok(body);
    assert.equal(body.get("client_assertion_type"), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    const assertion = body.get("client_assertion")!;
    const [h, p] = assertion.split(".");
    const header = JSON.parse(Buffer.from(h!, "base64url").toString());
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    assert.equal(header.alg, alg);
    assert.equal(header.kid, key.kid);
    assert.equal(claims.iss, "client-1");
    assert.equal(claims.sub, "client-1");
    assert.equal(nodeVerifyCompact(assertion, key.exportPublic()), true);
  });
}

test("@peculiar/x509: a CSR signed by an HSM EC key verifies (x509 and openssl)", async () => {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=hsmkey test, O=hsmkey",
    keys: { privateKey: ec.privateKey!, publicKey: ec.publicKey! },
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature)],
  });
  assert.equal(await csr.verify(), true);
  assert.equal(csr.subject, "CN=hsmkey test, O=hsmkey");
  const spki = Buffer.from(csr.publicKey.rawData);
  const expectedSpki = Buffer.from(await crypto.subtle.exportKey("spki", ec.publicKey!));
  assert.deepEqual(spki, expectedSpki);
  checkWithOpenssl(csr.toString("pem"));
});

test("@peculiar/x509: a CSR signed by an HSM RSA key (RSASSA-PKCS1-v1_5 SHA-256) verifies with openssl", async () => {
  const key = rsa.as("RS256");
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=hsmkey rsa",
    keys: { privateKey: key.privateKey!, publicKey: key.publicKey! },
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  });
  assert.equal(await csr.verify(), true);
  checkWithOpenssl(csr.toString("pem"));
});

function checkWithOpenssl(pem: string): void {
  const dir = mkdtempSync(join(tmpdir(), "hsmkey-csr-"));
  try {
    const path = join(dir, "req.pem");
    writeFileSync(path, pem);
    const ok = opensslVerify(path);
    assert.match(ok, /verify OK/, ok);
    assert.match(ok, /subject=.*hsmkey/);
    // A corrupted signature is rejected by openssl.
    const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
    der[der.length - 5]! ^= 1;
    writeFileSync(path, `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END CERTIFICATE REQUEST-----\n`);
    const bad = opensslVerify(path);
    assert.doesNotMatch(bad, /verify OK/);
    assert.match(bad, /verify fail/i);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** openssl's combined output for `req -verify` (its exit status does not tell failure apart on every version). */
function opensslVerify(path: string): string {
  const r = spawnSync("openssl", ["req", "-in", path, "-verify", "-noout", "-subject"], { encoding: "utf8" });
  return `${r.stdout}${r.stderr}`;
}
