// dyno serve BUNDLE: host the cloud parts of a bundle (runtime/server.ts; docs/protocol.md).
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { UsageError } from "../../compiler/errors.js";
import { SERVE_DEFAULTS, startServer, WS_PATH, INFER_PATH } from "../../runtime/server.js";
import type { Command } from "../args.js";
import { dynoVersion } from "../version.js";

export const serve: Command = {
  name: "serve",
  summary: "serve the cloud parts of a bundle over WebSocket and HTTP (KServe v2 health, Prometheus metrics)",
  usage: "serve BUNDLE [--host 127.0.0.1] [--port 8080] [--token-file F] [--max-body BYTES] [--max-inflight N] [--max-inflight-per-client N] [--timeout-ms N] [--threads N]",
  help: [
    `  --host H                     address to listen on (default ${SERVE_DEFAULTS.host})`,
    `  --port N                     port (default ${SERVE_DEFAULTS.port}; 0: any free port, printed)`,
    "  --token-file F               require Authorization: Bearer <the file's content, trimmed> on every",
    "                               request except /v2/health/*",
    `  --max-body BYTES             largest request message (default ${SERVE_DEFAULTS.maxBody}); over it: 413 / WS close 1009`,
    `  --max-inflight N             requests in flight in the server (default ${SERVE_DEFAULTS.maxInflight}); over it: 429`,
    `  --max-inflight-per-client N  per WebSocket connection or HTTP remote address (default ${SERVE_DEFAULTS.maxInflightPerClient})`,
    `  --timeout-ms N               per request, arrival to response (default ${SERVE_DEFAULTS.timeoutMs}); over it: 504`,
    "  --threads N                  onnxruntime intra-op threads per session (default: cores, at most 4)",
  ].join("\n"),
  options: {
    host: { type: "string" },
    port: { type: "string" },
    "token-file": { type: "string" },
    "max-body": { type: "string" },
    "max-inflight": { type: "string" },
    "max-inflight-per-client": { type: "string" },
    "timeout-ms": { type: "string" },
    threads: { type: "string" },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`serve: expected one BUNDLE\nusage: dyno ${serve.usage}`);
    const int = (flag: string, min: number): number | undefined => {
      const v = values[flag] as string | undefined;
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${flag} "${v}" is not an integer >= ${min}`);
      return n;
    };
    const server = await startServer({
      bundle: positionals[0]!,
      host: values.host as string | undefined,
      port: int("port", 0),
      token: values["token-file"] === undefined ? undefined : readToken(values["token-file"] as string),
      maxBody: int("max-body", 1),
      maxInflight: int("max-inflight", 1),
      maxInflightPerClient: int("max-inflight-per-client", 1),
      timeoutMs: int("timeout-ms", 1),
      threads: int("threads", 1) ?? Math.max(1, Math.min(4, availableParallelism())),
      version: dynoVersion(),
      log: (line) => console.error(line),
    });
    const m = server.manifest;
    console.log(`dyno serve: bundle ${m.model.name} (${m.variants.length} variants) on ${server.url} (ws ${WS_PATH}, http POST ${INFER_PATH})`);
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        process.off("SIGINT", onInt).off("SIGTERM", onTerm);
        console.error(`dyno serve: ${signal}: finishing ${server.inflight} request(s) in flight, then closing`);
        server.close().then(resolve, (e: Error) => {
          console.error(`dyno serve: error while closing: ${e.message}`);
          resolve();
        });
      };
      const onInt = () => stop("SIGINT");
      const onTerm = () => stop("SIGTERM");
      process.on("SIGINT", onInt).on("SIGTERM", onTerm);
    });
    return 0;
  },
};

function readToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`--token-file "${path}": ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  const token = text.trim();
  if (!token) throw new UsageError(`--token-file "${path}" is empty`);
  if (/\s/.test(token)) throw new UsageError(`--token-file "${path}": the token contains whitespace (one token, no spaces or newlines)`);
  return token;
}
