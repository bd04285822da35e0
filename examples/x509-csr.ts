/**
 * An X.509 certificate signing request (PKCS#10) signed by a token key, with @peculiar/x509.
 *
 * @peculiar/x509 signs through WebCrypto; with the shim installed, the ES256 signature of the CSR
 * is made in the token. The CSR is then checked by @peculiar/x509 (csr.verify()) and, when the
 * openssl command is available, independently by `openssl req -verify`.
 *
 *   npx tsx examples/x509-csr.ts
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { installShim, openHsm } from "../src/index.js";
import "reflect-metadata"; // @peculiar/x509 requires a Reflect metadata polyfill, loaded first
import * as x509 from "@peculiar/x509";

const hsm = await openHsm();
try {
  installShim();
  const key = await hsm.ensureKey("ES256", { label: "ec-p256" });

  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=api.example.com, O=Example",
    keys: { privateKey: key.privateKey!, publicKey: key.publicKey! },
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  const pem = csr.toString("pem");
  console.log(`CSR for "${csr.subject}" (${pem.length} bytes of PEM), signed in the token with ECDSA P-256/SHA-256`);

  // The CSR carries the token key's public key...
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", key.publicKey!));
  assert.deepEqual(new Uint8Array(csr.publicKey.rawData), spki);
  // ...and its signature verifies.
  assert.equal(await csr.verify(), true);
  console.log("csr.verify(): true; the CSR's public key is the token key's");

  const openssl = spawnSync("openssl", ["req", "-verify", "-noout"], { input: pem, encoding: "utf8" });
  if (openssl.error) {
    console.log("openssl not found: skipped the independent check");
  } else {
    assert.equal(openssl.status, 0, openssl.stderr);
    assert.match(openssl.stdout + openssl.stderr, /verify OK/i);
    console.log("openssl req -verify: OK");
  }
  console.log("x509 CSR: OK");
} finally {
  await hsm.close();
}
