import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, X509Certificate as NodeX509 } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HsmKeySet, InvalidInputError, type HsmKey } from "../src/index.js";
import { createCsr, createSelfSignedCertificate, getCertificate, issueCertificate, storeCertificate, x5cOf, x5tS256Of } from "../src/x509/index.js";
import { CKA, CKO } from "../src/pkcs11/constants.js";
import { findObjects, readAttributes } from "../src/pkcs11/attributes.js";
import { freshHsm, leftovers, type Fixture } from "./helpers/token.js";

let fx: Fixture;
let dir: string;

function openssl(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8", ...(input !== undefined ? { input } : {}) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

before(async () => {
  fx = await freshHsm();
  dir = mkdtempSync(join(tmpdir(), "hsmkey-x509-"));
});

after(async () => {
  const left = await leftovers(fx.hsm);
  await fx.close();
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(left, { sessionObjects: 0, busySessions: 0 });
});

const CASES = [
  { alg: "RS256", openssl: "rsaEncryption", sigAlg: "sha256WithRSAEncryption" },
  { alg: "ES256", openssl: "id-ecPublicKey", sigAlg: "ecdsa-with-SHA256" },
  { alg: "EdDSA", openssl: "ED25519", sigAlg: "ED25519" },
] as const;

describe("X.509 with keys in the token", () => {
  const keys = new Map<string, HsmKey>();

  before(async () => {
    for (const c of CASES) keys.set(c.alg, await fx.hsm.generateKey(c.alg, { label: `x509-${c.alg}` }));
  });

  for (const c of CASES) {
    test(`${c.alg}: CSR verified by openssl, with subject, SANs and the key's public key`, async () => {
      const key = keys.get(c.alg)!;
      const csr = await createCsr(key, { subject: `CN=api-${c.alg}.example.com, O=Example`, sans: ["dns:api.example.com", "ip:10.0.0.1"] });
      const path = file(`${c.alg}.csr`, csr.toString("pem"));
      const verify = openssl(["req", "-in", path, "-verify", "-noout"]);
      assert.equal(verify.status, 0, verify.stderr);
      assert.match(verify.stdout + verify.stderr, /verify OK/i);
      const text = openssl(["req", "-in", path, "-noout", "-text"]);
      assert.equal(text.status, 0, text.stderr);
      assert.match(text.stdout, new RegExp(`Subject: O ?= ?Example, CN ?= ?api-${c.alg}\\.example\\.com|Subject: CN ?= ?api-${c.alg}\\.example\\.com, O ?= ?Example`));
      assert.match(text.stdout, new RegExp(`Public Key Algorithm: ${c.openssl}`));
      assert.match(text.stdout, new RegExp(`Signature Algorithm: ${c.sigAlg}`));
      assert.match(text.stdout, /DNS:api\.example\.com, IP Address:10\.0\.0\.1/);
      // The CSR carries the token key's public key.
      const spki = Buffer.from(await crypto.subtle.exportKey("spki", key.publicKey!));
      assert.deepEqual(Buffer.from(csr.publicKey.rawData), spki);
    });

    test(`${c.alg}: self-signed certificate checked by openssl and node:crypto`, async () => {
      const key = keys.get(c.alg)!;
      const cert = await createSelfSignedCertificate(key, { subject: `CN=self-${c.alg}`, days: 30, serialNumber: "7f0102" });
      const path = file(`${c.alg}-self.pem`, cert.toString("pem"));
      const text = openssl(["x509", "-in", path, "-noout", "-text"]);
      assert.equal(text.status, 0, text.stderr);
      assert.match(text.stdout, new RegExp(`Subject: CN ?= ?self-${c.alg}\\n`));
      assert.match(text.stdout, new RegExp(`Issuer: CN ?= ?self-${c.alg}\\n`));
      assert.match(text.stdout, new RegExp(`Public Key Algorithm: ${c.openssl}`));
      assert.match(text.stdout, /Serial Number: 8323330 \(0x7f0102\)|Serial Number:\s+7f:01:02/);
      assert.match(text.stdout, /CA:TRUE/);
      const verify = openssl(["verify", "-CAfile", path, path]);
      assert.equal(verify.status, 0, verify.stderr + verify.stdout);
      const node = new NodeX509(cert.toString("pem"));
      assert.equal(node.verify(node.publicKey), true);
      const days = (Date.parse(node.validTo) - Date.parse(node.validFrom)) / 86_400_000;
      assert.equal(days, 30);
    });
  }

  test("chain: a CA key in the token issues leaf certificates for RSA, ECDSA and Ed25519 keys; openssl verifies them", async () => {
    const caKey = await fx.hsm.generateKey("ES384", { label: "x509-ca" });
    const caCert = await createSelfSignedCertificate(caKey, { subject: "CN=hsmkey test CA", days: 10 });
    const caPath = file("ca.pem", caCert.toString("pem"));
    for (const c of CASES) {
      const leaf = await issueCertificate(caKey, { issuer: caCert, publicKey: keys.get(c.alg)!, subject: `CN=leaf-${c.alg}`, sans: ["leaf.example.com"], days: 5 });
      assert.equal(leaf.issuer, caCert.subject);
      const leafPath = file(`leaf-${c.alg}.pem`, leaf.toString("pem"));
      const verify = openssl(["verify", "-CAfile", caPath, leafPath]);
      assert.equal(verify.status, 0, verify.stderr + verify.stdout);
      assert.match(verify.stdout, /: OK/);
      const text = openssl(["x509", "-in", leafPath, "-noout", "-text"]);
      assert.match(text.stdout, /Signature Algorithm: ecdsa-with-SHA384/);
      assert.match(text.stdout, new RegExp(`Public Key Algorithm: ${c.openssl}`));
      assert.match(text.stdout, /CA:FALSE/);
    }
    // A leaf signed by another key does not verify against this CA (the check can fail).
    const other = await createSelfSignedCertificate(keys.get("ES256")!, { subject: "CN=hsmkey test CA" });
    const forged = file("forged.pem", other.toString("pem"));
    assert.notEqual(openssl(["verify", "-CAfile", caPath, forged]).status, 0);
    // The issuer certificate must be the signing key's.
    await assert.rejects(issueCertificate(keys.get("RS256")!, { issuer: caCert, publicKey: caKey, subject: "CN=x" }), (e: unknown) => e instanceof InvalidInputError);
    await fx.hsm.deleteKey("x509-ca");
  });

  test("PS256 CSR from an RSA key", async () => {
    const csr = await createCsr(keys.get("RS256")!, { subject: "CN=pss", alg: "PS256" });
    const path = file("pss.csr", csr.toString("pem"));
    assert.equal(openssl(["req", "-in", path, "-verify", "-noout"]).status, 0);
    assert.match(openssl(["req", "-in", path, "-noout", "-text"]).stdout, /Signature Algorithm: rsassaPss/);
  });

  test("storeCertificate writes a CKO_CERTIFICATE with the key's id, label, subject, issuer, serial and value; getCertificate reads it", async () => {
    const key = keys.get("ES256")!;
    assert.equal(await getCertificate(fx.hsm, key), undefined);
    const cert = await createSelfSignedCertificate(key, { subject: "CN=stored, O=Example", serialNumber: "00ff10" });
    assert.equal(await storeCertificate(fx.hsm, key, cert), 0);
    const attrs = await fx.hsm.token.withSession((s) => {
      const lib = fx.hsm.token.lib;
      const found = findObjects(lib, s, [{ type: CKA.CLASS, value: CKO.CERTIFICATE }, { type: CKA.ID, value: Buffer.from(key.id!) }]);
      assert.equal(found.length, 1);
      return readAttributes(lib, s, found[0]!, [CKA.LABEL, CKA.SUBJECT, CKA.ISSUER, CKA.SERIAL_NUMBER, CKA.VALUE, CKA.TOKEN, CKA.CERTIFICATE_TYPE]);
    });
    assert.equal(attrs.get(CKA.LABEL)!.toString(), "x509-ES256");
    assert.deepEqual(attrs.get(CKA.VALUE), Buffer.from(cert.rawData));
    assert.deepEqual(attrs.get(CKA.SUBJECT), Buffer.from(cert.subjectName.toArrayBuffer()));
    assert.deepEqual(attrs.get(CKA.ISSUER), Buffer.from(cert.issuerName.toArrayBuffer()));
    assert.deepEqual(attrs.get(CKA.SERIAL_NUMBER), Buffer.from("020300ff10", "hex"));
    assert.equal(attrs.get(CKA.TOKEN)![0], 1);
    const back = await getCertificate(fx.hsm, key);
    assert.ok(back);
    assert.deepEqual(Buffer.from(back.rawData), Buffer.from(cert.rawData));

    // Storing again replaces the old certificate.
    const renewed = await createSelfSignedCertificate(key, { subject: "CN=renewed" });
    assert.equal(await storeCertificate(fx.hsm, key, renewed.toString("pem")), 1);
    assert.equal((await getCertificate(fx.hsm, key))!.subject, "CN=renewed");

    // A certificate for another key is refused.
    const rsaCert = await createSelfSignedCertificate(keys.get("RS256")!, { subject: "CN=rsa" });
    await assert.rejects(storeCertificate(fx.hsm, key, rsaCert), (e: unknown) => e instanceof InvalidInputError && /another public key/.test((e as Error).message));
    await assert.rejects(storeCertificate(fx.hsm, key, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"), (e: unknown) => e instanceof InvalidInputError);
  });

  test("x5c and x5t#S256 in public JWKs and the JWKS where a certificate is stored", async () => {
    const key = keys.get("RS256")!;
    const cert = await createSelfSignedCertificate(key, { subject: "CN=jwks" });
    await storeCertificate(fx.hsm, key, cert);
    const der = Buffer.from(cert.rawData);
    assert.deepEqual(x5cOf(cert), [der.toString("base64")]);
    assert.equal(x5tS256Of(cert), createHash("sha256").update(der).digest("base64url"));
    // The key at hand learns of the certificate when it is stored; a key found later reads it from the token.
    assert.deepEqual(key.exportPublic().x5c, [der.toString("base64")]);
    const jwk = (await fx.hsm.getKey({ id: key.id! })).exportPublic();
    assert.deepEqual(jwk.x5c, [der.toString("base64")]);
    assert.equal(jwk["x5t#S256"], createHash("sha256").update(der).digest("base64url"));
    assert.equal(jwk.n, key.exportPublic().n);
    // The x5c certificate carries the same key as the JWK (checked by node:crypto).
    const fromX5c = new NodeX509(Buffer.from(jwk.x5c![0]!, "base64")).publicKey.export({ format: "jwk" });
    assert.equal(fromX5c.n, jwk.n);

    const set = new HsmKeySet(fx.hsm);
    await set.add(key);
    await set.add(keys.get("EdDSA")!);
    const jwks = set.toJWKS();
    assert.equal(jwks.keys.length, 2);
    const byKid = new Map(jwks.keys.map((k) => [k.kid, k]));
    assert.deepEqual(byKid.get(key.kid)!.x5c, [der.toString("base64")]);
    assert.equal(byKid.get(keys.get("EdDSA")!.kid)!.x5c, undefined);
    assert.equal(byKid.get(keys.get("EdDSA")!.kid)!["x5t#S256"], undefined);
  });

  test("hsm.storeCertificate / hsm.getCertificate take PEM, DER or a node:crypto X509Certificate", async () => {
    const key = await fx.hsm.generateKey("ES256", { label: "x509-methods" });
    const cert = await createSelfSignedCertificate(key, { subject: "CN=methods" });
    const der = Buffer.from(cert.rawData);
    await fx.hsm.storeCertificate(key, new NodeX509(der));
    assert.deepEqual(key.exportPublic().x5c, [der.toString("base64")]);
    assert.equal(Buffer.from((await fx.hsm.getCertificate(key))!.rawData).equals(der), true);
    const renewed = await createSelfSignedCertificate(key, { subject: "CN=methods renewed" });
    await fx.hsm.storeCertificate(key, renewed.toString("pem"));
    assert.equal((await fx.hsm.getCertificate(key))!.subject, "CN=methods renewed");
    const other = await createSelfSignedCertificate(await fx.hsm.generateKey("ES256", { label: "x509-other" }), { subject: "CN=other" });
    await assert.rejects(fx.hsm.storeCertificate(key, other.rawData), (e: unknown) => e instanceof InvalidInputError && /another public key/.test((e as Error).message));
    assert.equal(await fx.hsm.deleteKey("x509-methods"), 3);
    assert.equal(await fx.hsm.deleteKey("x509-other"), 2);
  });

  test("deleteKey removes the key's certificate too", async () => {
    const key = await fx.hsm.generateKey("ES256", { label: "x509-doomed" });
    await storeCertificate(fx.hsm, key, await createSelfSignedCertificate(key, { subject: "CN=doomed" }));
    assert.ok(await getCertificate(fx.hsm, key));
    assert.equal(await fx.hsm.deleteKey("x509-doomed"), 3);
    const count = await fx.hsm.token.withSession((s) => findObjects(fx.hsm.token.lib, s, [{ type: CKA.CLASS, value: CKO.CERTIFICATE }, { type: CKA.ID, value: Buffer.from(key.id!) }]).length);
    assert.equal(count, 0);
  });

  test("bad input: empty subject, bad serial, secret key", async () => {
    const key = keys.get("ES256")!;
    await assert.rejects(createCsr(key, { subject: " " }), (e: unknown) => e instanceof InvalidInputError);
    await assert.rejects(createSelfSignedCertificate(key, { subject: "CN=x", serialNumber: "xyz" }), (e: unknown) => e instanceof InvalidInputError);
    await assert.rejects(createSelfSignedCertificate(key, { subject: "CN=x", days: 0 }), (e: unknown) => e instanceof InvalidInputError);
    const hmac = await fx.hsm.generateKey("HS256", { label: "x509-hmac" });
    await assert.rejects(createCsr(hmac, { subject: "CN=x" }), (e: unknown) => e instanceof InvalidInputError);
    await fx.hsm.deleteKey("x509-hmac");
  });
});
