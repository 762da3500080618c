// The cloud client on Node: runtime/device/client.ts with the `ws` package's WebSocket, which
// can send the token as an Authorization header (Node 20 has no global WebSocket).
import WebSocket from "ws";
import { WS_PROTOCOL } from "../common/protocol.js";
import { connectCloud as connect, type CloudClient, type CloudOptions, type SocketFactory, type SocketLike } from "../device/client.js";

export * from "../device/client.js";

export const nodeSocket: SocketFactory = async (url, token) => {
  const headers = token === undefined ? undefined : { Authorization: `Bearer ${token}` };
  return new WebSocket(url, [WS_PROTOCOL], { headers, perMessageDeflate: false }) as unknown as SocketLike;
};

export function connectCloud(options: CloudOptions): CloudClient {
  return connect({ socket: nodeSocket, ...options });
}
