/** What a CLI command is: its words, options, help, and what it runs. */
import type { ParseArgsConfig } from "node:util";
import type { Context } from "./context.js";

export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  /** Command words, e.g. ["keys", "list"]. */
  path: string[];
  summary: string;
  /** Usage after "hsmkey <path>", e.g. "--key K [--alg ALG]". */
  usage: string;
  /** Lines of help describing the options. */
  help?: string[];
  options: OptionSpec;
  /** Positional arguments the command takes at most (default 0). */
  maxPositionals?: number;
  /** False for commands that do not open a token (init). */
  opensToken?: boolean;
  run(ctx: Context, values: Values, positionals: string[]): Promise<number | void>;
}
