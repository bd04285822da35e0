import type { Command } from "../command.js";
import { keyRow } from "../key-info.js";

export const keysList: Command = {
  path: ["keys", "list"],
  summary: "List the keys on the token",
  usage: "",
  options: {},
  async run(ctx) {
    const hsm = await ctx.hsm();
    const rows = [];
    for (const key of await hsm.listKeys()) rows.push(await keyRow(hsm, key));
    ctx.printTable(rows, ["label", "id", "kid", "type", "algorithms", "certificate"]);
  },
};
