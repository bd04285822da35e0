/**
 * JWE decryption (guide: "Decryption").
 *
 * Someone else encrypts to our public keys (here: jose with the public CryptoKeys); the token
 * decrypts. Shown for RSA-OAEP (the RSA unwrap runs in the token) and ECDH-ES+A128KW (the ECDH
 * key agreement runs in the token), in compact and general JSON serialisation. A JWE whose
 * ciphertext was changed fails to decrypt.
 *
 *   npx tsx examples/decryption.ts
 */
import assert from "node:assert/strict";
import { CompactEncrypt, GeneralEncrypt, compactDecrypt, errors, generalDecrypt } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  const rsa = (await hsm.ensureKey("RS256", { label: "rsa-2048" })).as("RSA-OAEP");
  const ec = (await hsm.ensureKey("ES256", { label: "ec-p256" })).as("ECDH-ES+A128KW");
  const message = "Secret for the token holder";
  const plaintext = new TextEncoder().encode(message);

  // Compact JWE to the RSA key
  const compact = await new CompactEncrypt(plaintext).setProtectedHeader({ alg: "RSA-OAEP", enc: "A256GCM" }).encrypt(rsa.publicKey!);
  const one = await compactDecrypt(compact, rsa.privateKey!);
  assert.equal(new TextDecoder().decode(one.plaintext), message);
  console.log(`RSA-OAEP/A256GCM compact JWE decrypted: "${new TextDecoder().decode(one.plaintext)}"`);

  // General JSON JWE with two recipients: the RSA key and the EC key
  const general = await new GeneralEncrypt(plaintext)
    .setProtectedHeader({ enc: "A128GCM" })
    .addRecipient(rsa.publicKey!).setUnprotectedHeader({ alg: "RSA-OAEP", kid: "rsa" })
    .addRecipient(ec.publicKey!).setUnprotectedHeader({ alg: "ECDH-ES+A128KW", kid: "ec" })
    .encrypt();
  assert.equal(general.recipients.length, 2);
  const viaRsa = await generalDecrypt(general, rsa.privateKey!);
  const viaEc = await generalDecrypt(general, ec.privateKey!);
  assert.deepEqual(viaRsa.plaintext, plaintext);
  assert.deepEqual(viaEc.plaintext, plaintext);
  console.log(`general JWE with ${general.recipients.length} recipients decrypted by the RSA key and by the EC key (ECDH-ES+A128KW)`);

  // A changed ciphertext is rejected
  const parts = compact.split(".");
  const ct = Buffer.from(parts[3]!, "base64url");
  ct[0] = ct[0]! ^ 1;
  parts[3] = ct.toString("base64url");
  await assert.rejects(compactDecrypt(parts.join("."), rsa.privateKey!), errors.JWEDecryptionFailed);
  console.log("tampered JWE rejected");
  console.log("decryption: OK");
} finally {
  await hsm.close();
}
