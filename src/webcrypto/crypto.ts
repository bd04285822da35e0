/**
 * `hsm.crypto`: a WebCrypto `Crypto` over one token. `subtle` runs on the token; random values
 * come from the token's RNG (C_GenerateRandom).
 */
import type { Token } from "../pkcs11/token.js";
import { tokenError } from "../pkcs11/ckr.js";
import { HsmSubtleCrypto } from "./subtle.js";

const MAX_RANDOM_BYTES = 65536;

export class HsmCrypto implements Crypto {
  readonly subtle: HsmSubtleCrypto;
  readonly #token: Token;

  constructor(token: Token) {
    this.#token = token;
    this.subtle = new HsmSubtleCrypto(token);
  }

  getRandomValues<T extends ArrayBufferView | null>(array: T): T {
    if (!ArrayBuffer.isView(array) || array instanceof Float32Array || array instanceof Float64Array || array instanceof DataView) {
      throw new DOMException("getRandomValues takes an integer TypedArray", "TypeMismatchError");
    }
    if (array.byteLength > MAX_RANDOM_BYTES) {
      throw new DOMException(`getRandomValues fills at most ${MAX_RANDOM_BYTES} bytes`, "QuotaExceededError");
    }
    if (array.byteLength === 0) return array;
    const target = Buffer.from(array.buffer, array.byteOffset, array.byteLength);
    const fill = (session: Buffer) => {
      this.#token.lib.C_GenerateRandom(session, target);
    };
    try {
      // Synchronous API: use an idle pooled session, or a short-lived one when all are lent.
      if (!this.#token.pool.trySync(fill)) {
        const session = this.#token.pool.openSession();
        try {
          fill(session);
        } finally {
          this.#token.lib.C_CloseSession(session);
        }
      }
    } catch (error) {
      throw tokenError(error, `C_GenerateRandom on ${this.#token.describe()}`);
    }
    return array;
  }

  randomUUID(): `${string}-${string}-${string}-${string}-${string}` {
    const b = this.getRandomValues(new Uint8Array(16));
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    const h = Buffer.from(b).toString("hex");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}
