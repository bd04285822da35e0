/**
 * KeyRing: the service's signing keys on the token, and their rotation.
 *
 * One key signs. Rotation generates a new key on the token and makes it the signer; the previous
 * signer stays published in the JWKS until the last token it signed has expired (its retirement
 * time = rotation time + token lifetime), then it is pruned from the JWKS (and, if asked,
 * destroyed on the token).
 *
 * The state lives on the token itself, in the key labels `<prefix>/<alg>/<created ms>/<random>`:
 * on start the newest key signs, and each older key retires one token lifetime after the key that
 * followed it was created. No state file is needed, and a restart publishes the same keys.
 */
import { randomBytes } from "node:crypto";
import { HsmKeySet, type Hsm, type HsmKey, type PublicJwk } from "../../src/index.js";
import { checkAlgorithm, type SigningAlgorithm } from "./config.js";

export interface KeyRingOptions {
  alg: SigningAlgorithm;
  tokenLifetimeSeconds: number;
  labelPrefix: string;
  /** Milliseconds since the epoch (injectable for tests). */
  now: () => number;
  /** Destroy retired keys on the token instead of leaving them there unused. */
  destroyRetiredKeys: boolean;
  log: (event: string, fields?: Record<string, unknown>) => void;
}

export interface RotationResult {
  kid: string;
  alg: SigningAlgorithm;
  label: string;
  /** The key that signed before, and when it leaves the JWKS. */
  previous?: { kid: string; retiresAt: Date };
}

interface Entry {
  key: HsmKey;
  label: string;
  createdAt: number;
  /** Undefined for the signing key. */
  retiresAt?: number;
}

export class KeyRing {
  readonly #hsm: Hsm;
  readonly #options: KeyRingOptions;
  readonly #set: HsmKeySet;
  readonly #entries = new Map<string, Entry>();
  #signing: Entry | undefined;
  #rotating: Promise<unknown> = Promise.resolve();

  private constructor(hsm: Hsm, options: KeyRingOptions) {
    this.#hsm = hsm;
    this.#options = options;
    this.#set = new HsmKeySet(hsm);
  }

  /** Load this service's keys from the token; generate the first key (or one of a newly configured alg). */
  static async open(hsm: Hsm, options: KeyRingOptions): Promise<KeyRing> {
    const ring = new KeyRing(hsm, options);
    await ring.#load();
    if (!ring.#signing || ring.#signing.key.alg !== options.alg) await ring.rotate();
    return ring;
  }

  /** The key that signs new tokens. */
  get signingKey(): HsmKey {
    this.prune();
    if (!this.#signing) throw new Error("KeyRing has no signing key");
    return this.#signing.key;
  }

  /** The public JWKS: the signing key and the retired keys whose tokens may still be valid. */
  jwks(): { keys: PublicJwk[] } {
    this.prune();
    return this.#set.toJWKS();
  }

  /** Make a new key the signer; the current one retires one token lifetime from now. Rotations run one at a time. */
  rotate(): Promise<RotationResult> {
    const run = this.#rotating.then(() => this.#rotate());
    this.#rotating = run.catch(() => undefined);
    return run;
  }

  /** Resolves when no rotation is running. */
  async settled(): Promise<void> {
    await this.#rotating;
  }

  /** Drop keys whose retirement time has passed. Returns the kids dropped. */
  prune(): string[] {
    const now = this.#options.now();
    const dropped: string[] = [];
    for (const [kid, entry] of this.#entries) {
      if (entry.retiresAt === undefined || entry.retiresAt > now) continue;
      this.#entries.delete(kid);
      this.#set.delete(kid);
      dropped.push(kid);
      this.#options.log("key retired", { kid, label: entry.label });
      if (this.#options.destroyRetiredKeys) {
        this.#hsm.deleteKey(entry.label).then(
          (objects) => this.#options.log("retired key destroyed", { kid, objects }),
          (error: Error) => this.#options.log("could not destroy retired key", { kid, error: error.message }),
        );
      }
    }
    return dropped;
  }

  /** kid, alg and retirement time of every published key (for logs and tests). */
  describe(): { kid: string; alg: string; label: string; signing: boolean; retiresAt?: string }[] {
    this.prune();
    return [...this.#entries.values()].map((e) => ({
      kid: e.key.kid,
      alg: e.key.alg,
      label: e.label,
      signing: e === this.#signing,
      ...(e.retiresAt !== undefined ? { retiresAt: new Date(e.retiresAt).toISOString() } : {}),
    }));
  }

  async #rotate(): Promise<RotationResult> {
    const { alg, labelPrefix, now, tokenLifetimeSeconds } = this.#options;
    const createdAt = now();
    const label = `${labelPrefix}/${alg}/${createdAt}/${randomBytes(3).toString("hex")}`;
    const key = await this.#hsm.generateKey(alg, { label, use: "sig" });
    const previous = this.#signing;
    const retiresAt = createdAt + tokenLifetimeSeconds * 1000;
    await this.#set.add(key);
    const entry: Entry = { key, label, createdAt };
    this.#entries.set(key.kid, entry);
    this.#signing = entry;
    if (previous) previous.retiresAt = retiresAt;
    this.#options.log("key rotated", { kid: key.kid, alg, label, ...(previous ? { previousKid: previous.key.kid, previousRetiresAt: new Date(retiresAt).toISOString() } : {}) });
    return { kid: key.kid, alg, label, ...(previous ? { previous: { kid: previous.key.kid, retiresAt: new Date(retiresAt) } } : {}) };
  }

  async #load(): Promise<void> {
    const { labelPrefix, now, tokenLifetimeSeconds } = this.#options;
    const found: { key: HsmKey; label: string; alg: SigningAlgorithm; createdAt: number }[] = [];
    for (const key of await this.#hsm.listKeys()) {
      const parsed = key.label !== undefined ? parseLabel(labelPrefix, key.label) : undefined;
      if (!parsed || !key.privateKey) continue;
      try {
        found.push({ key: key.as(parsed.alg), label: key.label!, ...parsed });
      } catch (error) {
        this.#options.log("key skipped", { label: key.label, error: (error as Error).message });
      }
    }
    found.sort((a, b) => a.createdAt - b.createdAt);
    const current = now();
    found.forEach((f, i) => {
      const next = found[i + 1];
      const retiresAt = next ? next.createdAt + tokenLifetimeSeconds * 1000 : undefined;
      if (retiresAt !== undefined && retiresAt <= current) return;
      const entry: Entry = { key: f.key, label: f.label, createdAt: f.createdAt, ...(retiresAt !== undefined ? { retiresAt } : {}) };
      this.#entries.set(f.key.kid, entry);
      if (retiresAt === undefined) this.#signing = entry;
    });
    for (const entry of this.#entries.values()) await this.#set.add(entry.key);
    this.#options.log("keys loaded", { keys: this.describe() });
  }
}

function parseLabel(prefix: string, label: string): { alg: SigningAlgorithm; createdAt: number } | undefined {
  if (!label.startsWith(`${prefix}/`)) return undefined;
  const match = /^([A-Za-z0-9]+)\/(\d{1,15})\/[0-9a-f]+$/.exec(label.slice(prefix.length + 1));
  if (!match) return undefined;
  try {
    return { alg: checkAlgorithm(match[1]!), createdAt: Number(match[2]) };
  } catch {
    return undefined;
  }
}
