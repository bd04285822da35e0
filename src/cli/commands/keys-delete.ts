import type { Command } from "../command.js";
import { EXIT, UsageError } from "../errors.js";
import { confirm } from "../pin.js";

export const keysDelete: Command = {
  path: ["keys", "delete"],
  summary: "Delete a key (its private, public and secret objects and its certificates)",
  usage: "--key K [--yes]",
  help: ["--yes   do not ask for confirmation (required when stdin is not a terminal)"],
  options: { key: { type: "string" }, yes: { type: "boolean", short: "y" } },
  async run(ctx, v) {
    const hsm = await ctx.hsm();
    const key = await ctx.key(v.key);
    const what = `key '${key.label ?? key.kid}' (kid ${key.kid})`;
    if (v.yes !== true) {
      if (!process.stdin.isTTY) throw new UsageError(`Refusing to delete ${what} without --yes`);
      if (!(await confirm(`Delete ${what} from token '${hsm.info.label}'? This cannot be undone.`))) {
        process.stderr.write("Not deleted.\n");
        return EXIT.FAILED;
      }
    }
    const ref = key.id?.length ? { id: key.id } : { label: key.label! };
    const objects = await hsm.deleteKey(ref);
    ctx.printFields({ deleted: key.kid, label: key.label, objects });
  },
};
