/** Keys for jose from the token: one named key, or every key as a key set. */
import { HsmKeySet } from "../../jose/key-set.js";
import type { Context } from "../context.js";

export async function tokenKeySet(ctx: Context): Promise<HsmKeySet> {
  const hsm = await ctx.hsm();
  const set = new HsmKeySet(hsm);
  for (const key of await hsm.listKeys()) {
    try {
      await set.add(key);
    } catch {
      // a second key with the same kid: the first one stays
    }
  }
  return set;
}
