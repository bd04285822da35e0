/**
 * Test fixture: a fresh embedded SoftHSM2 token in a temporary HSMKEY_HOME, per test process
 * (node --test runs each file in its own process, and SoftHSM reads its configuration once).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openHsm, type Hsm } from "../../src/index.js";

export interface Fixture {
  hsm: Hsm;
  home: string;
  /** Objects on the token before the tests ran. */
  baseline: { token: number; session: number };
  close(): Promise<void>;
}

export async function freshHsm(options: { maxSessions?: number } = {}): Promise<Fixture> {
  const home = mkdtempSync(join(tmpdir(), "hsmkey-test-"));
  process.env.HSMKEY_HOME = home;
  delete process.env.HSMKEY_MODULE;
  delete process.env.HSMKEY_PIN;
  delete process.env.HSMKEY_TOKEN;
  const hsm = await openHsm({ home, ...options });
  const baseline = (await hsm.stats()).objects;
  return {
    hsm,
    home,
    baseline,
    async close() {
      await hsm.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Session objects left behind and sessions still lent: both must be zero after every test. */
export async function leftovers(hsm: Hsm): Promise<{ sessionObjects: number; busySessions: number }> {
  const stats = await hsm.stats();
  return { sessionObjects: stats.objects.session, busySessions: stats.sessions.busy };
}
