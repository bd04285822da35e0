/**
 * Error handling (guide: "Error Handling").
 *
 * hsmkey's errors are classes (all subclasses of HsmError) with a stable `code`; catch them by
 * class or by code. Shown: a missing key (KeyNotFoundError), private export (KeyExportError),
 * an algorithm that does not fit the key (UnsupportedAlgorithmError), a duplicate kid in a key
 * set (InvalidInputError), and WebCrypto's own refusal to export a private key from the token.
 *
 *   npx tsx examples/error-handling.ts
 */
import assert from "node:assert/strict";
import { HsmError, HsmKeySet, InvalidInputError, installShim, KeyExportError, KeyNotFoundError, openHsm, UnsupportedAlgorithmError } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();

  // 1. A key that is not there: catch by class
  try {
    await hsm.getKey("nonexistent");
    assert.fail("getKey should have thrown");
  } catch (error) {
    if (!(error instanceof KeyNotFoundError)) throw error;
    assert.equal(error.code, "ERR_HSM_KEY_NOT_FOUND");
    assert.match(error.message, /nonexistent/);
    console.log(`Key not found: [${error.code}] ${error.message}`);
  }

  // 2. Private key export: catch by code
  const key = await hsm.ensureKey("RS256", { label: "rsa-2048" });
  try {
    key.exportPrivate();
    assert.fail("exportPrivate should have thrown");
  } catch (error) {
    if (!(error instanceof HsmError) || error.code !== "ERR_HSM_KEY_EXPORT") throw error;
    assert.ok(error instanceof KeyExportError);
    console.log(`Operation not allowed: [${error.code}] ${error.message}`);
  }

  // 3. WebCrypto itself refuses to export the token's private key (the CryptoKey is non-extractable)
  assert.equal(key.privateKey!.extractable, false);
  const refused = await crypto.subtle.exportKey("pkcs8", key.privateKey!).then(
    () => undefined,
    (error: unknown) => error,
  );
  assert.ok(refused instanceof Error, "exportKey should have been refused");
  console.log(`crypto.subtle.exportKey("pkcs8", privateKey) refused: ${refused.name}: ${refused.message}`);

  // 4. An algorithm the key cannot do
  assert.throws(() => key.as("ES256"), (error: unknown) => error instanceof UnsupportedAlgorithmError && error.code === "ERR_HSM_UNSUPPORTED_ALGORITHM");
  console.log("key.as(\"ES256\") on an RSA key: UnsupportedAlgorithmError (ERR_HSM_UNSUPPORTED_ALGORITHM)");

  // 5. Duplicate kid in a key set
  const keySet = new HsmKeySet(hsm);
  await keySet.add("rsa-2048", { kid: "k1" });
  await assert.rejects(keySet.add("rsa-2048", { kid: "k1" }), (error: unknown) => error instanceof InvalidInputError && error.code === "ERR_HSM_DUPLICATE_KID");
  console.log("second key with kid 'k1': InvalidInputError (ERR_HSM_DUPLICATE_KID)");

  // 6. Every hsmkey error is an HsmError, so one catch can handle them all
  const codes: string[] = [];
  for (const attempt of [() => hsm.getKey({ label: "missing-too" }), async () => key.exportPrivate()]) {
    try {
      await attempt();
    } catch (error) {
      if (error instanceof HsmError) codes.push(error.code);
      else throw error;
    }
  }
  assert.deepEqual(codes, ["ERR_HSM_KEY_NOT_FOUND", "ERR_HSM_KEY_EXPORT"]);
  console.log(`caught as HsmError: ${codes.join(", ")}`);
  console.log("error handling: OK");
} finally {
  await hsm.close();
}
