/**
 * The example JWKS/token service (examples/jwks-server): started in-process on loopback against a
 * fresh embedded token; its JWKS is fetched with jose.createRemoteJWKSet and the tokens it issues
 * are verified with it, through rotations and retirements (a fake clock drives the retirement).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, verify as nodeVerify } from "node:crypto";
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from "jose";
import { startServer, type RunningServer } from "../examples/jwks-server/server.js";
import { freshHsm, leftovers, type Fixture } from "./helpers/token.js";

const ADMIN = "test-admin-token-0123456789";

let fx: Fixture;
before(async () => {
  fx = await freshHsm();
});
after(async () => {
  await fx.close();
});

/** A clock the test advances. */
function fakeClock(start = Date.now()) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms), date: () => new Date(now) };
}

/** A remote JWKS that refetches on every lookup (no cache, no cooldown), as a verifier would after its cache expires. */
function remote(server: RunningServer) {
  return createRemoteJWKSet(new URL(`${server.url}/.well-known/jwks.json`), { cacheMaxAge: 0, cooldownDuration: 0 });
}

async function fetchJwks(server: RunningServer): Promise<{ keys: { kid: string; alg: string; kty: string }[] }> {
  const res = await fetch(`${server.url}/.well-known/jwks.json`);
  assert.equal(res.status, 200);
  return (await res.json()) as { keys: { kid: string; alg: string; kty: string }[] };
}

async function issue(server: RunningServer, body: unknown): Promise<string> {
  const res = await fetch(`${server.url}/token`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get("cache-control"), "no-store");
  const json = (await res.json()) as { access_token: string; token_type: string; expires_in: number };
  assert.equal(json.token_type, "Bearer");
  return json.access_token;
}

async function post(server: RunningServer, path: string, body: string | undefined, headers: Record<string, string> = {}): Promise<{ status: number; json: { error?: string } & Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${server.url}${path}`, { method: "POST", headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  return { status: res.status, json: JSON.parse(text) as { error?: string }, headers: res.headers };
}

for (const [alg, kty] of [["ES256", "EC"], ["RS256", "RSA"]] as const) {
  describe(`jwks-server with ${alg}`, () => {
    const clock = fakeClock();
    let server: RunningServer;

    before(async () => {
      server = await startServer({ port: 0, host: "127.0.0.1", alg, tokenLifetimeSeconds: 60, hsm: fx.hsm, adminToken: ADMIN, labelPrefix: `t-${alg}`, now: clock.now });
    });
    after(async () => {
      await server.close();
      assert.deepEqual(await leftovers(fx.hsm), { sessionObjects: 0, busySessions: 0 });
      assert.equal(fx.hsm.closed, false, "a given Hsm is not closed by the server");
    });

    test("serves a JWKS with one signing key, as JSON with Cache-Control", async () => {
      const res = await fetch(`${server.url}/.well-known/jwks.json`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.equal(res.headers.get("cache-control"), "public, max-age=60");
      const jwks = (await res.json()) as { keys: Record<string, unknown>[] };
      assert.equal(jwks.keys.length, 1);
      assert.equal(jwks.keys[0]!.kty, kty);
      assert.equal(jwks.keys[0]!.alg, alg);
      assert.equal(jwks.keys[0]!.use, "sig");
      assert.equal(jwks.keys[0]!.d, undefined);
      assert.equal(jwks.keys[0]!.kid, server.keys()[0]!.kid);
    });

    test("issues tokens that verify against the remote JWKS, and rotates keys", async () => {
      const JWKS = remote(server);
      const verifyOptions = () => ({ issuer: server.issuer, audience: server.audience, currentDate: clock.date() });
      const oldToken = await issue(server, { sub: "alice", role: "admin", n: 1 });
      const oldKid = decodeProtectedHeader(oldToken).kid!;
      const verified = await jwtVerify(oldToken, JWKS, verifyOptions());
      assert.equal(verified.protectedHeader.alg, alg);
      assert.equal(verified.protectedHeader.typ, "JWT");
      const p: JWTPayload = verified.payload;
      assert.equal(p.sub, "alice");
      assert.equal(p.role, "admin");
      assert.equal(p.iss, server.issuer);
      assert.equal(p.iss, server.url);
      assert.equal(p.aud, "hsmkey-example");
      assert.equal(p.iat, Math.floor(clock.now() / 1000));
      assert.equal(p.exp, p.iat! + 60);
      assert.match(String(p.jti), /^[0-9a-f-]{36}$/);

      // Independent check: node:crypto verifies the signature with the published JWK.
      const jwk = (await fetchJwks(server)).keys.find((k) => k.kid === oldKid)!;
      const [h, b, s] = oldToken.split(".");
      const key = createPublicKey({ key: jwk as never, format: "jwk" });
      const ok = nodeVerify(alg === "ES256" ? "sha256" : "RSA-SHA256", Buffer.from(`${h}.${b}`), alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key, Buffer.from(s!, "base64url"));
      assert.equal(ok, true);

      // Rotate: the new key signs, the old key stays published.
      clock.advance(10_000);
      const rotation = await post(server, "/rotate", undefined, { authorization: `Bearer ${ADMIN}` });
      assert.equal(rotation.status, 200);
      const newKid = rotation.json.kid as string;
      assert.notEqual(newKid, oldKid);
      assert.deepEqual(rotation.json.previous, { kid: oldKid, retires_at: new Date(clock.now() + 60_000).toISOString() });
      assert.deepEqual((await fetchJwks(server)).keys.map((k) => k.kid).sort(), [oldKid, newKid].sort());

      const newToken = await issue(server, { sub: "bob" });
      assert.equal(decodeProtectedHeader(newToken).kid, newKid);
      assert.equal((await jwtVerify(newToken, JWKS, verifyOptions())).payload.sub, "bob");
      assert.equal((await jwtVerify(oldToken, JWKS, verifyOptions())).payload.sub, "alice");

      // Just before retirement the old key is still there; after it, it is gone.
      clock.advance(59_999);
      assert.equal((await fetchJwks(server)).keys.length, 2);
      clock.advance(1);
      assert.deepEqual((await fetchJwks(server)).keys.map((k) => k.kid), [newKid]);
      await assert.rejects(jwtVerify(oldToken, JWKS, { ...verifyOptions(), currentDate: new Date(clock.now() - 60_000) }), errors.JWKSNoMatchingKey);
      // (the currentDate before the tokens' exp shows the refusal is the missing key, not expiry)
      assert.equal((await jwtVerify(newToken, JWKS, { ...verifyOptions(), currentDate: new Date(clock.now() - 1_000) })).payload.sub, "bob");
      const fresh = await issue(server, { sub: "bob" });
      assert.equal(decodeProtectedHeader(fresh).kid, newKid);
      assert.equal((await jwtVerify(fresh, JWKS, verifyOptions())).payload.sub, "bob");

      // The programmatic rotate() does the same.
      const again = await server.rotate();
      assert.equal(again.previous?.kid, newKid);
      assert.equal(decodeProtectedHeader(await issue(server, { sub: "carol" })).kid, again.kid);
    });

    test("bad requests get 400/401/403/404/405/413/415 with a JSON error", async () => {
      const json = { "content-type": "application/json" };
      assert.deepEqual([(await post(server, "/token", "{bad", json)).status, (await post(server, "/token", "{bad", json)).json.error], [400, "invalid_json"]);
      assert.equal((await post(server, "/token", JSON.stringify({ role: "x" }), json)).status, 400);
      assert.equal((await post(server, "/token", JSON.stringify({ sub: 42 }), json)).status, 400);
      assert.equal((await post(server, "/token", JSON.stringify(["alice"]), json)).status, 400);
      const reserved = await post(server, "/token", JSON.stringify({ sub: "a", exp: 9999999999, iss: "evil" }), json);
      assert.equal(reserved.status, 400);
      assert.match(String(reserved.json.message), /iss, exp|exp, iss/);
      assert.equal((await post(server, "/token", JSON.stringify({ sub: "a" }), { "content-type": "text/plain" })).status, 415);
      const big = await post(server, "/token", JSON.stringify({ sub: "a", pad: "x".repeat(70 * 1024) }), json);
      assert.deepEqual([big.status, big.json.error], [413, "body_too_large"]);

      const before = server.keys().map((k) => k.kid);
      const noAuth = await post(server, "/rotate", undefined);
      assert.deepEqual([noAuth.status, noAuth.json.error], [401, "unauthorized"]);
      assert.match(noAuth.headers.get("www-authenticate") ?? "", /^Bearer /);
      assert.equal((await post(server, "/rotate", undefined, { authorization: `Bearer ${ADMIN}x` })).status, 401);
      assert.equal((await post(server, "/rotate", undefined, { authorization: `Basic ${ADMIN}` })).status, 401);
      assert.deepEqual(server.keys().map((k) => k.kid), before, "refused rotations change nothing");

      const missing = await fetch(`${server.url}/nope`);
      assert.equal(missing.status, 404);
      assert.equal(((await missing.json()) as { error: string }).error, "not_found");
      const wrongMethod = await fetch(`${server.url}/token`);
      assert.equal(wrongMethod.status, 405);
      assert.equal(wrongMethod.headers.get("allow"), "POST");
      assert.equal((await fetch(`${server.url}/.well-known/jwks.json`, { method: "DELETE" })).status, 405);
    });
  });
}

test("without an admin token, HTTP rotation is refused (403); a restart finds the keys on the token", async () => {
  const clock = fakeClock();
  const options = { port: 0, host: "127.0.0.1", alg: "ES256", tokenLifetimeSeconds: 30, hsm: fx.hsm, labelPrefix: "restart", now: clock.now } as const;
  const first = await startServer(options);
  let firstKids: string[];
  let firstSigner: string;
  try {
    const refused = await post(first, "/rotate", undefined, { authorization: `Bearer ${ADMIN}` });
    assert.deepEqual([refused.status, refused.json.error], [403, "rotation_disabled"]);
    clock.advance(1_000);
    await first.rotate();
    firstKids = first.keys().map((k) => k.kid);
    assert.equal(firstKids.length, 2);
    firstSigner = first.keys().find((k) => k.signing)!.kid;
  } finally {
    await first.close();
  }
  const oldToken = await (async () => {
    const s = await startServer(options);
    try {
      // Same keys, same signer: the state is in the labels on the token.
      assert.deepEqual(s.keys().map((k) => k.kid).sort(), [...firstKids].sort());
      assert.equal(s.keys().find((k) => k.signing)!.kid, firstSigner);
      const token = await issue(s, { sub: "dave" });
      assert.equal(decodeProtectedHeader(token).kid, firstSigner);
      return token;
    } finally {
      await s.close();
    }
  })();
  clock.advance(30_000);
  const third = await startServer({ ...options, alg: "EdDSA" });
  try {
    // The pre-rotation key retired while down; the ES256 signer is replaced by an EdDSA key at start and stays published.
    const keys = third.keys();
    assert.equal(keys.length, 2);
    assert.equal(keys.find((k) => k.signing)!.alg, "EdDSA");
    const es = keys.find((k) => !k.signing)!;
    assert.equal(es.alg, "ES256");
    assert.equal(es.kid, decodeProtectedHeader(oldToken).kid);
    const verified = await jwtVerify(oldToken, remote(third), { audience: "hsmkey-example", currentDate: new Date(clock.now() - 5_000) });
    assert.equal(verified.payload.sub, "dave");
    const edToken = await issue(third, { sub: "erin" });
    assert.equal(decodeProtectedHeader(edToken).alg, "EdDSA");
    assert.equal((await jwtVerify(edToken, remote(third), { issuer: third.issuer, currentDate: clock.date() })).payload.sub, "erin");
  } finally {
    await third.close();
  }
  assert.deepEqual(await leftovers(fx.hsm), { sessionObjects: 0, busySessions: 0 });
});

test("with the real clock, a rotated-out key leaves the JWKS one token lifetime later", async () => {
  const server = await startServer({ port: 0, alg: "ES256", tokenLifetimeSeconds: 1, hsm: fx.hsm, labelPrefix: "realtime" });
  try {
    const JWKS = remote(server);
    const oldToken = await issue(server, { sub: "frank" });
    const { previous } = await server.rotate();
    assert.equal(previous?.kid, decodeProtectedHeader(oldToken).kid);
    // exp has whole-second precision, so a 1 s token may be past it already: the point is that its key is still published.
    assert.equal((await jwtVerify(oldToken, JWKS, { issuer: server.issuer, audience: server.audience, clockTolerance: 5 })).payload.sub, "frank");
    await new Promise((r) => setTimeout(r, Math.max(0, previous!.retiresAt.getTime() - Date.now()) + 50));
    assert.equal((await fetchJwks(server)).keys.some((k) => k.kid === previous!.kid), false);
    await assert.rejects(jwtVerify(oldToken, JWKS, { clockTolerance: 60 }), (e: unknown) => e instanceof errors.JWKSNoMatchingKey && e.code === "ERR_JWKS_NO_MATCHING_KEY");
  } finally {
    await server.close();
  }
  assert.deepEqual(await leftovers(fx.hsm), { sessionObjects: 0, busySessions: 0 });
});
