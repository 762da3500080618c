// A `dyno` command run from the sources in a child process (as a user's process would be: its
// own event loop, killed with a signal), with the URL it prints when it listens.
import { spawn, type ChildProcess } from "node:child_process";
import { ROOT } from "../fixtures.js";
import { until } from "./waits.js";

export interface CliProcess {
  child: ChildProcess;
  url: string;
  out: () => string;
  err: () => string;
  /** SIGKILL, and wait for the exit. */
  kill: () => Promise<void>;
}

/** Starts `dyno ARGS` and waits (at most `ms`) for a stdout line with `on http://host:port`. */
export async function startCli(args: string[], ms = 60_000): Promise<CliProcess> {
  const code = `import("${ROOT}cli/main.ts").then(async (m) => { process.exitCode = await m.runCli(${JSON.stringify(args)}); })`;
  const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const url = () => / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
  try {
    await until(`dyno ${args[0]} to listen`, () => !!url() || child.exitCode !== null, ms);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  if (!url()) throw new Error(`dyno ${args.join(" ")} exited ${child.exitCode}: ${err || out}`);
  return {
    child,
    url: url()!,
    out: () => out,
    err: () => err,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
