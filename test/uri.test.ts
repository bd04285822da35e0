import { test } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { InvalidInputError } from "../src/errors.js";
import { formatPkcs11Uri, isPkcs11Uri, parsePkcs11Uri, type Pkcs11Uri } from "../src/pkcs11/uri.js";

function assertUriError(fn: () => unknown, pattern?: RegExp): InvalidInputError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof InvalidInputError, `expected InvalidInputError, got ${inspect(caught)}`);
  assert.equal(caught.code, "ERR_HSM_URI");
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

test("parses every path attribute", () => {
  const uri = parsePkcs11Uri(
    "pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=0123abcd;" +
      "slot-id=42;slot-description=Slot%201;slot-manufacturer=ACME;library-manufacturer=OpenSC;" +
      "library-description=PKCS%2311%20lib;library-version=2.6;object=signing-key;id=%01%02%ff;type=private",
  );
  assert.deepEqual(uri, {
    token: "My Token",
    manufacturer: "SoftHSM project",
    model: "SoftHSM v2",
    serial: "0123abcd",
    slotId: 42,
    slotDescription: "Slot 1",
    slotManufacturer: "ACME",
    libraryManufacturer: "OpenSC",
    libraryDescription: "PKCS#11 lib",
    object: "signing-key",
    id: new Uint8Array([1, 2, 255]),
    type: "private",
  });
});

test("parses every query attribute", () => {
  const uri = parsePkcs11Uri(
    "pkcs11:token=t?module-path=/usr/lib/softhsm/libsofthsm2.so&module-name=softhsm2&pin-value=1234",
  );
  assert.equal(uri.token, "t");
  assert.equal(uri.modulePath, "/usr/lib/softhsm/libsofthsm2.so");
  assert.equal(uri.moduleName, "softhsm2");
  assert.equal(uri.pinValue, "1234");
  assert.equal(parsePkcs11Uri("pkcs11:?pin-source=file:/run/secrets/pin").pinSource, "file:/run/secrets/pin");
});

test("id is raw bytes: percent-encoded and literal characters", () => {
  assert.deepEqual(parsePkcs11Uri("pkcs11:id=%00%7F%80%FE").id, new Uint8Array([0x00, 0x7f, 0x80, 0xfe]));
  assert.deepEqual(parsePkcs11Uri("pkcs11:id=%aB%Cd").id, new Uint8Array([0xab, 0xcd]));
  assert.deepEqual(parsePkcs11Uri("pkcs11:id=AB").id, new Uint8Array([0x41, 0x42]));
  assert.deepEqual(parsePkcs11Uri("pkcs11:id=").id, new Uint8Array([]));
  assert.ok(parsePkcs11Uri("pkcs11:id=%01").id instanceof Uint8Array);
});

test("text values are UTF-8 after percent-decoding", () => {
  assert.equal(parsePkcs11Uri("pkcs11:object=cl%C3%A9").object, "clé");
  assert.equal(parsePkcs11Uri("pkcs11:object=a%3Bb%3Dc%3Fd%26e").object, "a;b=c?d&e");
  assert.equal(parsePkcs11Uri("pkcs11:token=").token, "");
  assertUriError(() => parsePkcs11Uri("pkcs11:object=%C3%28"), /UTF-8/);
});

test("the scheme is case-insensitive and an empty URI is valid", () => {
  assert.equal(parsePkcs11Uri("PKCS11:token=x").token, "x");
  assert.deepEqual(parsePkcs11Uri("pkcs11:"), {});
  assert.deepEqual(parsePkcs11Uri("pkcs11:token=x;"), { token: "x" });
});

test("all object types are accepted", () => {
  for (const type of ["private", "public", "secret-key", "cert", "data"] as const) {
    assert.equal(parsePkcs11Uri(`pkcs11:type=${type}`).type, type);
  }
});

test("vendor x- attributes are ignored", () => {
  assert.deepEqual(parsePkcs11Uri("pkcs11:token=t;x-vendor=1?x-other=2&module-name=m"), { token: "t", moduleName: "m" });
});

test("isPkcs11Uri", () => {
  assert.equal(isPkcs11Uri("pkcs11:token=a"), true);
  assert.equal(isPkcs11Uri("Pkcs11:"), true);
  assert.equal(isPkcs11Uri("pkcs12:token=a"), false);
  assert.equal(isPkcs11Uri(" pkcs11:token=a"), false);
  assert.equal(isPkcs11Uri(42), false);
  assert.equal(isPkcs11Uri(undefined), false);
});

test("errors: wrong scheme, unknown type, bad slot-id, duplicates, bad encoding, unknown attribute", () => {
  assertUriError(() => parsePkcs11Uri("pkcs12:token=a"), /pkcs11:/);
  assertUriError(() => parsePkcs11Uri("token=a"), /scheme/);
  assertUriError(() => parsePkcs11Uri("pkcs11:type=secret"), /type "secret"/);
  assertUriError(() => parsePkcs11Uri("pkcs11:slot-id=abc"), /slot-id/);
  assertUriError(() => parsePkcs11Uri("pkcs11:slot-id=-1"), /slot-id/);
  assertUriError(() => parsePkcs11Uri("pkcs11:slot-id=1.5"), /slot-id/);
  assertUriError(() => parsePkcs11Uri("pkcs11:slot-id=99999999999999999999"), /slot-id/);
  assertUriError(() => parsePkcs11Uri("pkcs11:token=a;token=b"), /more than once/);
  assertUriError(() => parsePkcs11Uri("pkcs11:?module-name=a&module-name=b"), /more than once/);
  assertUriError(() => parsePkcs11Uri("pkcs11:id=%0"), /percent-encoding/);
  assertUriError(() => parsePkcs11Uri("pkcs11:id=%zz"), /percent-encoding/);
  assertUriError(() => parsePkcs11Uri("pkcs11:object=100%"), /percent-encoding/);
  assertUriError(() => parsePkcs11Uri("pkcs11:label=a"), /unknown path attribute "label"/);
  assertUriError(() => parsePkcs11Uri("pkcs11:?pin=1"), /unknown query attribute/);
  assertUriError(() => parsePkcs11Uri("pkcs11:token"), /no value/);
  assertUriError(() => parsePkcs11Uri("pkcs11:?token=a"), /path attribute/);
  assertUriError(() => parsePkcs11Uri("pkcs11:module-path=/x"), /query attribute/);
});

test("errors never reveal the pin-value", () => {
  const cases = [
    "pkcs11:token=a;type=bogus?pin-value=secret123",
    "pkcs11:token=a;token=b?pin-value=secret123",
    "pkcs11:pin-value=secret123",
    "pkcs11:token=a?pin-value=secret123&pin-value=secret123",
    "pkcs11:token=a?pin-value=secret123%zz",
    "pkcs11:token=a?pin-value=sec&ret123",
    "pkcs11:token=a?pin-value=sec&ret123=1",
    "pkcs11:token=a?pin-value=secret123&pin-source=file:/x",
    "pkcs11:slot-id=secret123?pin-value=secret123",
    "pkcs11:token=a;type=secret123?pin-value=secret123",
    "pkcs11:token=a#pin-value=secret123",
    "pkcs11-nope:token=a?pin-value=secret123",
  ];
  for (const text of cases) {
    const error = assertUriError(() => parsePkcs11Uri(text));
    assert.ok(!error.message.includes("secret123"), `message leaks the PIN for ${JSON.stringify(text)}: ${error.message}`);
    assert.ok(!error.message.includes("ret123"), `message leaks part of the PIN: ${error.message}`);
    const shown = inspect(error, { depth: 10, showHidden: true });
    assert.ok(!shown.includes("ret123"), `inspect leaks the PIN: ${shown}`);
    assert.ok(!JSON.stringify(error).includes("ret123"));
  }
});

test("format encodes id bytes fully and reserved characters in strings", () => {
  const text = formatPkcs11Uri({ token: "My Token;x", object: "a/b?c", id: new Uint8Array([1, 2, 0x41]), type: "public" });
  assert.equal(text, "pkcs11:token=My%20Token%3Bx;object=a%2Fb%3Fc;type=public;id=%01%02%41");
  assert.equal(formatPkcs11Uri({}), "pkcs11:");
  assert.equal(formatPkcs11Uri({ slotId: 7 }), "pkcs11:slot-id=7");
  assert.equal(formatPkcs11Uri({ modulePath: "/usr/lib/x.so" }), "pkcs11:?module-path=/usr/lib/x.so");
});

test("format omits the pin-value unless includePin", () => {
  const uri: Pkcs11Uri = { token: "t", pinValue: "p&1" };
  assert.equal(formatPkcs11Uri(uri), "pkcs11:token=t");
  assert.ok(!formatPkcs11Uri(uri).includes("pin-value"));
  assert.equal(formatPkcs11Uri(uri, { includePin: true }), "pkcs11:token=t?pin-value=p%261");
  assert.equal(parsePkcs11Uri(formatPkcs11Uri(uri, { includePin: true })).pinValue, "p&1");
});

test("format rejects bad slotId and type", () => {
  assertUriError(() => formatPkcs11Uri({ slotId: -1 }));
  assertUriError(() => formatPkcs11Uri({ type: "bogus" as Pkcs11Uri["type"] }));
});

test("round trip format → parse", () => {
  const full: Pkcs11Uri = {
    token: "tok én;=&?#%/",
    manufacturer: "M",
    model: "m o d e l",
    serial: "00ff",
    slotId: 0,
    slotDescription: "slot desc",
    slotManufacturer: "slot man",
    libraryManufacturer: "lib man",
    libraryDescription: "lib desc",
    object: "obj\u{1F511}",
    id: new Uint8Array([0, 1, 2, 37, 59, 255]),
    type: "secret-key",
    modulePath: "/opt/my lib/p11.so",
    moduleName: "p11&x",
    pinValue: "p;i&n=?",
  };
  assert.deepEqual(parsePkcs11Uri(formatPkcs11Uri(full, { includePin: true })), full);
  const { pinValue: _omitted, ...withoutPin } = full;
  assert.deepEqual(parsePkcs11Uri(formatPkcs11Uri(full)), withoutPin);
  const withSource: Pkcs11Uri = { object: "k", pinSource: "file:/etc/pin?x=1" };
  assert.deepEqual(parsePkcs11Uri(formatPkcs11Uri(withSource)), withSource);
  const rfc = "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.;object=my-key;type=private;id=%A1%B2";
  assert.deepEqual(parsePkcs11Uri(formatPkcs11Uri(parsePkcs11Uri(rfc))), parsePkcs11Uri(rfc));
});
