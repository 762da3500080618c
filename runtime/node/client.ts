// The cloud client on Node: runtime/device/client.ts with the `ws` package's WebSocket, which
// can send the token as an Authorization header (Node 20 has no global WebSocket), and gzip from
// node:zlib (KServe request bodies, `gzip: true`).
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import WebSocket from "ws";
import { WS_PROTOCOL } from "../common/protocol.js";
import { connectCloud as connect, type CloudClient, type CloudOptions, type Gzipper, type SocketFactory, type SocketLike } from "../device/client.js";

export * from "../device/client.js";

export const nodeSocket: SocketFactory = async (url, token) => {
  const headers = token === undefined ? undefined : { Authorization: `Bearer ${token}` };
  return new WebSocket(url, [WS_PROTOCOL], { headers, perMessageDeflate: false }) as unknown as SocketLike;
};

const gzipAsync = promisify(gzip);
export const zlibGzip: Gzipper = async (bytes) => new Uint8Array(await gzipAsync(bytes));

export function connectCloud(options: CloudOptions): CloudClient {
  return connect({ socket: nodeSocket, gzipper: zlibGzip, ...options });
}
