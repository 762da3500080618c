// A dyno serve and its clients for the server tests: started on a free loopback port with the
// test's bundle and token, remembered so the suite's `after` closes them; and `rejection`, which
// expects a call to fail with a CloudError.
import * as assert from "uvu/assert";
import type { NodeBundle } from "../../runtime/node/bundle.js";
import { CloudError, connectCloud, type CloudClient, type CloudOptions } from "../../runtime/node/client.js";
import { startServer, type DynoServer, type ServeOptions } from "../../runtime/cloud/server.js";

export function cloudHarness(o: { bundle: () => NodeBundle; token: string; timeoutMs: number }) {
  const servers: DynoServer[] = [];
  const clients: CloudClient[] = [];
  return {
    servers,
    clients,
    async serve(options: Partial<ServeOptions> = {}): Promise<DynoServer> {
      const srv = await startServer({ bundle: o.bundle(), port: 0, token: o.token, ...options });
      servers.push(srv);
      return srv;
    },
    client(srv: DynoServer, options: Partial<CloudOptions> = {}): CloudClient {
      const c = connectCloud({ url: srv.url, model: o.bundle().manifest.model.sha256, token: o.token, timeoutMs: o.timeoutMs, ...options });
      clients.push(c);
      return c;
    },
  };
}

/** The CloudError `p` rejects with; fails the test when it resolves. */
export async function rejection(p: Promise<unknown>): Promise<CloudError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, CloudError, String(e));
    return e as CloudError;
  }
  assert.unreachable("resolved; expected a CloudError");
  throw new Error("unreachable");
}

/** A series' value in the server's /metrics: `name` with exactly `labels` (as written, e.g. 'kind="timeout"'), or unlabelled. */
export function metricValue(srv: Pick<DynoServer, "metrics">, name: string, labels?: string): number {
  const series = labels === undefined ? `${name}(?:\\{[^}]*\\})?` : `${name}\\{${labels}\\}`;
  return Number(new RegExp(`^${series} (\\d+)`, "m").exec(srv.metrics())?.[1] ?? 0);
}

/** The server's count of `transport` requests answered with `status` (ok or an error kind), from /metrics. */
export function answered(srv: Pick<DynoServer, "metrics">, status: string, transport: "ws" | "http" = "ws"): number {
  return metricValue(srv, "dyno_requests_total", `transport="${transport}",status="${status}"`);
}
