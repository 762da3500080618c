// Argument parsing on node:util parseArgs (strict: unknown flags are errors), with help text.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../runtime/common/errors.js";
import type { Dim } from "../compiler/ir/graph.js";

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Help lines for the options, one per flag. */
  help: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  run(args: { values: Record<string, unknown>; positionals: string[] }): Promise<number>;
}

export function parseCommand(cmd: Command, argv: string[]) {
  try {
    return parseArgs({ args: argv, options: { ...cmd.options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${cmd.name}: ${(e as Error).message.replace(/\. To specify a positional.*$/s, "")}\n${usageLine(cmd)}`);
  }
}

export function usageLine(cmd: Command): string {
  return `usage: dyno ${cmd.usage}   (dyno ${cmd.name} --help for more)`;
}

/** `name=1,3,224,224` (repeatable); `batch` or `?` keeps a dim symbolic. */
export function parseInputShapes(specs: string[] | undefined): Record<string, Dim[]> | undefined {
  if (!specs?.length) return undefined;
  const out: Record<string, Dim[]> = {};
  for (const spec of specs) {
    const m = spec.match(/^([^=]+)=([^=]+)$/);
    if (!m) throw new UsageError(`--input-shape "${spec}": expected NAME=D1,D2,... (e.g. input=1,3,224,224)`);
    const dims = m[2]!.split(/[,x]/).map((d): Dim => {
      const t = d.trim();
      if (/^\d+$/.test(t)) return Number(t);
      if (/^[A-Za-z_][\w]*$/.test(t)) return t;
      throw new UsageError(`--input-shape "${spec}": dim "${t}" is not a non-negative integer or a symbol name`);
    });
    out[m[1]!] = dims;
  }
  return out;
}
