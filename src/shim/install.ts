/**
 * The global shim: makes `crypto.subtle` (what jose v6 and most libraries call) reach HSM keys.
 *
 * It replaces, on Node's SubtleCrypto instance only, the methods that take a key. Each replacement
 * hands calls that involve an HSM-backed key to an HsmSubtleCrypto, and every other call to the
 * native method, unchanged. digest, generateKey and importKey are not touched at all.
 * Idempotent; the returned function restores the native methods.
 */
import { webcrypto } from "node:crypto";
import { HsmSubtleCrypto } from "../webcrypto/subtle.js";

const KEYED_METHODS = ["sign", "verify", "encrypt", "decrypt", "deriveBits", "deriveKey", "wrapKey", "unwrapKey", "exportKey"] as const;

let uninstall: (() => void) | undefined;

export function installShim(): () => void {
  if (uninstall) return uninstall;
  const subtle = webcrypto.subtle as unknown as Record<string, unknown>;
  const router = new HsmSubtleCrypto() as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of KEYED_METHODS) {
    const route = router[name]!.bind(router);
    Object.defineProperty(subtle, name, {
      value: function (...args: unknown[]) {
        return route(...args);
      },
      configurable: true,
      writable: true,
      enumerable: false,
    });
  }
  uninstall = () => {
    for (const name of KEYED_METHODS) delete subtle[name];
    uninstall = undefined;
  };
  return uninstall;
}

export function isShimInstalled(): boolean {
  return uninstall !== undefined;
}
