// The `dyno` command line: subcommands, --help, --version, errors as one line.
import { DynoError, UsageError } from "../runtime/common/errors.js";
import { parseCommand, usageLine, type Command } from "./args.js";
import { compileCommand } from "./commands/compile.js";
import { demo } from "./commands/demo.js";
import { exportCommand } from "./commands/export.js";
import { exportVariant } from "./commands/export-variant.js";
import { inspect } from "./commands/inspect.js";
import { serve } from "./commands/serve.js";
import { run } from "./commands/run.js";
import { split } from "./commands/split.js";
import { tile } from "./commands/tile.js";
import { verify } from "./commands/verify.js";
import { dynoVersion } from "./version.js";

const COMMANDS: Command[] = [inspect, split, tile, compileCommand, verify, exportVariant, exportCommand, serve, run, demo];

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "dyno — split DNN inference: compile, partition and serve ONNX models across device and cloud",
    "",
    "usage: dyno <command> [options]",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "  dyno <command> --help   options of a command",
    "  dyno --version          print the version",
  ].join("\n");
}

/** Runs the CLI; returns the exit code. Errors print as `dyno: <message>`. */
export async function runCli(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  try {
    if (!first || first === "--help" || first === "-h" || first === "help") {
      console.log(mainHelp());
      return first ? 0 : 2;
    }
    if (first === "--version" || first === "-v") {
      console.log(dynoVersion());
      return 0;
    }
    const cmd = COMMANDS.find((c) => c.name === first);
    if (!cmd) throw new UsageError(`unknown command "${first}" (commands: ${COMMANDS.map((c) => c.name).join(", ")})`);
    const parsed = parseCommand(cmd, rest);
    if (parsed.values.help) {
      console.log(`${usageLine(cmd).replace(/ {3}\(.*$/, "")}\n\n${cmd.summary}\n\noptions:\n${cmd.help}`);
      return 0;
    }
    return await cmd.run(parsed as { values: Record<string, unknown>; positionals: string[] });
  } catch (e) {
    if (e instanceof DynoError) {
      console.error(`dyno: ${e.message}`);
      return e instanceof UsageError ? 2 : 1;
    }
    console.error(`dyno: internal error: ${(e as Error).message ?? e}`);
    if (process.env.DYNO_DEBUG) console.error((e as Error).stack);
    return 70;
  }
}
