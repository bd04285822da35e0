import { ensureEmbeddedToken } from "../../pkcs11/embedded.js";
import type { Command } from "../command.js";
import { UsageError } from "../errors.js";

export const init: Command = {
  path: ["init"],
  summary: "Create (or show) the embedded SoftHSM development token",
  usage: "[--home DIR] [--token LABEL]",
  help: ["The embedded token is for development only: its PIN is stored in a file beside its keys."],
  options: {},
  opensToken: false,
  async run(ctx) {
    const g = ctx.global;
    if (typeof g.module === "string" || typeof g.uri === "string" || process.env.HSMKEY_MODULE) {
      throw new UsageError("init creates the embedded development token; it does not initialise tokens of other modules (use the vendor's tools)");
    }
    const t = ensureEmbeddedToken({
      ...(typeof g.home === "string" ? { home: g.home } : {}),
      ...(typeof g.token === "string" ? { label: g.token } : {}),
    });
    ctx.printFields({ home: t.home, module: t.module, token: t.token, config: t.configPath, pinFile: `${t.home}/user.pin`, created: t.created });
  },
};
