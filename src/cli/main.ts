#!/usr/bin/env node
/**
 * hsmkey: JOSE keys in a PKCS#11 token from the command line. `hsmkey --help` lists the commands;
 * `hsmkey <command> --help` describes one.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { installShim } from "../shim/install.js";
import type { Command, OptionSpec, Values } from "./command.js";
import { COMMANDS } from "./commands/index.js";
import { Context, GLOBAL_HELP, GLOBAL_OPTIONS } from "./context.js";
import { describeError, EXIT, exitCodeOf, UsageError } from "./errors.js";

const EXIT_HELP = [
  "Exit codes: 0 ok, 1 failed (e.g. a JWT that does not verify), 2 bad usage or input,",
  "            3 module/token/login problem, 4 key not found, 5 unsupported algorithm.",
];

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.path.join(" ").length));
  return [
    "Usage: hsmkey <command> [options]",
    "",
    "JOSE keys (JWK, JWKS, JWT, JWE) and X.509 certificates in a PKCS#11 token (HSM).",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`),
    "",
    ...GLOBAL_HELP,
    "",
    ...EXIT_HELP,
    "",
    "Run 'hsmkey <command> --help' for a command's options.",
  ].join("\n");
}

function commandHelp(c: Command): string {
  return [`Usage: hsmkey ${c.path.join(" ")} ${c.usage}`.trimEnd(), "", c.summary, ...(c.help?.length ? ["", ...c.help] : []), "", ...GLOBAL_HELP].join("\n");
}

function groupHelp(word: string): string {
  const sub = COMMANDS.filter((c) => c.path[0] === word);
  return [`Usage: hsmkey ${word} <${sub.map((c) => c.path[1]).join("|")}> [options]`, "", ...sub.map((c) => `  ${c.path.join(" ").padEnd(16)} ${c.summary}`)].join("\n");
}

/** Every option any command knows, to find the command words among the arguments. */
function allOptions(): OptionSpec {
  const out: OptionSpec = { ...GLOBAL_OPTIONS };
  for (const c of COMMANDS) Object.assign(out, c.options);
  return out;
}

function findCommand(words: string[]): { command?: Command; group?: string } {
  for (const c of COMMANDS) if (c.path.every((w, i) => words[i] === w)) return { command: c };
  if (words[0] && COMMANDS.some((c) => c.path.length > 1 && c.path[0] === words[0])) return { group: words[0] };
  return {};
}

export async function main(argv: string[]): Promise<number> {
  let ctx: Context | undefined;
  let debug = argv.includes("--debug");
  try {
    let loose;
    try {
      loose = parseArgs({ args: argv, options: allOptions(), allowPositionals: true, strict: false });
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const words = loose.positionals;
    const { command, group } = findCommand(words);
    if (!command) {
      if (group) {
        if (loose.values.help === true || words.length === 1) {
          process.stdout.write(`${groupHelp(group)}\n`);
          return words.length === 1 && loose.values.help !== true ? EXIT.USAGE : EXIT.OK;
        }
        throw new UsageError(`Unknown command 'hsmkey ${words.slice(0, 2).join(" ")}' (see 'hsmkey ${group} --help')`);
      }
      if (loose.values.help === true || words.length === 0) {
        process.stdout.write(`${mainHelp()}\n`);
        return words.length === 0 && loose.values.help !== true ? EXIT.USAGE : EXIT.OK;
      }
      throw new UsageError(`Unknown command '${words[0]}' (see 'hsmkey --help')`);
    }
    if (loose.values.help === true) {
      process.stdout.write(`${commandHelp(command)}\n`);
      return EXIT.OK;
    }
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, ...command.options }, allowPositionals: true, strict: true });
    } catch (error) {
      const lines = (error as Error).message.split("\n");
      // A kid may start with "-": keep node's hint for that case ("use '--key=-XYZ'").
      const dash = lines.find((l) => l.startsWith("To specify an option argument starting with a dash"));
      const first = lines[0]!.replace(/\. To specify a positional.*$/, "");
      throw new UsageError(`${dash ? `${first} ${dash}` : first} (see 'hsmkey ${command.path.join(" ")} --help')`);
    }
    const positionals = parsed.positionals.slice(command.path.length);
    if (positionals.length > (command.maxPositionals ?? 0)) {
      throw new UsageError(`Unexpected argument '${positionals[command.maxPositionals ?? 0]}' (see 'hsmkey ${command.path.join(" ")} --help')`);
    }
    const values = parsed.values as Values;
    debug = values.debug === true;
    ctx = new Context(values);
    installShim();
    const code = await command.run(ctx, values, positionals);
    return code ?? EXIT.OK;
  } catch (error) {
    process.stderr.write(`hsmkey: error: ${describeError(error)}\n`);
    if (debug && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return exitCodeOf(error);
  } finally {
    await ctx?.close().catch(() => undefined);
  }
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`hsmkey: error: ${describeError(error)}\n`);
      process.exitCode = EXIT.FAILED;
    },
  );
}
