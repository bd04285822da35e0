/**
 * OAuth 2.0 private_key_jwt client authentication with oauth4webapi (RFC 7523).
 *
 * oauth4webapi's PrivateKeyJwt takes a CryptoKey (it checks `instanceof CryptoKey`); the HSM key
 * passes that check, so the client assertion is signed in the token. The example applies the
 * ClientAuth to a token request body, then checks the assertion the way the authorization
 * server would: signature with the public key, iss/sub = client_id, aud, exp, jti.
 *
 *   npx tsx examples/oauth-private-key-jwt.ts
 */
import assert from "node:assert/strict";
import * as oauth from "oauth4webapi";
import { jwtVerify } from "jose";
import { installShim, openHsm } from "../src/index.js";

const hsm = await openHsm();
try {
  installShim();
  const key = await hsm.ensureKey("ES256", { label: "ec-p256" });
  assert.ok(key.privateKey instanceof CryptoKey);

  const as: oauth.AuthorizationServer = { issuer: "https://as.example.com", token_endpoint: "https://as.example.com/token" };
  const client: oauth.Client = { client_id: "c1" };
  const clientAuth = oauth.PrivateKeyJwt({ key: key.privateKey!, kid: key.kid });

  const body = new URLSearchParams({ grant_type: "client_credentials" });
  const headers = new Headers();
  await clientAuth(as, client, body, headers);

  assert.equal(body.get("client_assertion_type"), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
  const assertion = body.get("client_assertion");
  assert.ok(assertion);
  console.log(`token request body: ${[...body.keys()].join(", ")}`);

  // Authorization server side
  const { payload, protectedHeader } = await jwtVerify(assertion, key.publicKey!, { issuer: "c1", subject: "c1", audience: as.issuer });
  assert.equal(protectedHeader.alg, "ES256");
  assert.equal(protectedHeader.kid, key.kid);
  assert.equal(typeof payload.jti, "string");
  assert.ok(payload.exp! > payload.iat!);
  console.log(`client_assertion (${protectedHeader.alg}, kid ${protectedHeader.kid!.slice(0, 12)}...) verified: iss=${payload.iss} sub=${payload.sub} aud=${payload.aud} jti=${payload.jti}`);
  console.log("oauth4webapi private_key_jwt: OK");
} finally {
  await hsm.close();
}
