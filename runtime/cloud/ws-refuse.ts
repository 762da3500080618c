// Refusing a connection without reading what the peer sends.
//
// A WebSocket upgrade without a valid token used to complete through `ws`, which then kept reading
// for its 30 s close timeout and buffered each message up to --max-body: 16 such connections took
// the server from 364 MB to 1.3 GB. Here no WebSocket object exists for a refused upgrade: the
// server writes the handshake and a close frame itself (RFC 6455 4.2.2, 5.5.1), half-closes, and
// discards at most REFUSED_READ_BUDGET bytes while the peer reads the close, cutting the socket on
// the peer's FIN, past the budget, or after REFUSED_LINGER_MS, whichever comes first.
//
//   peer ── GET /v1/ws (no token) ──►  101 + close 4401 ──► FIN      (nothing buffered)
//        ── frames ...             ──►  read and dropped, <= 64 KiB, <= 1 s, then destroy
//
// The handshake completes, rather than answering 401, because a browser sees only a close code,
// never the status of a refused upgrade: 4401 is how a browser device learns "unauthorized".
import { createHash } from "node:crypto";
import http from "node:http";
import type { Duplex } from "node:stream";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const KEY = /^[+/0-9A-Za-z]{22}==$/;

/** Bytes read (and dropped) from a refused socket before it is destroyed. */
export const REFUSED_READ_BUDGET = 64 * 1024;
/** How long a refused socket may stay open for its peer to read the refusal. */
export const REFUSED_LINGER_MS = 1000;

/** An unmasked server close frame with `code` and a reason of at most 123 bytes. */
export function closeFrame(code: number, reason: string): Buffer {
  const text = Buffer.from(reason, "utf8").subarray(0, 123);
  const frame = Buffer.alloc(4 + text.length);
  frame[0] = 0x88; // FIN + opcode 8 (close)
  frame[1] = 2 + text.length;
  frame.writeUInt16BE(code, 2);
  text.copy(frame, 4);
  return frame;
}

/**
 * Completes the upgrade of `req` and closes it at once with `code`; a request that is not a valid
 * WebSocket handshake gets 400. `onRead` counts the bytes read from the peer (head included).
 */
export function refuseWebSocket(req: http.IncomingMessage, socket: Duplex, head: Buffer, code: number, reason: string, protocol: string, onRead: (bytes: number) => void): void {
  const key = req.headers["sec-websocket-key"];
  const version = req.headers["sec-websocket-version"];
  if (typeof key !== "string" || !KEY.test(key) || (version !== "13" && version !== "8")) {
    return refuseHttp(socket, head, 400, "not a WebSocket handshake (Sec-WebSocket-Key / Sec-WebSocket-Version)", onRead);
  }
  const offered = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
  const accept = createHash("sha1").update(key + GUID).digest("base64");
  const lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Accept: ${accept}`];
  // A client that offered subprotocols fails a handshake that selects none of them.
  if (offered.includes(protocol)) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  const handshake = Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
  endAndDrop(socket, head, Buffer.concat([handshake, closeFrame(code, reason)]), onRead);
}

/** Answers an upgrade with a plain HTTP error and cuts the connection, reading nothing into memory. */
export function refuseHttp(socket: Duplex, head: Buffer, status: number, message: string, onRead: (bytes: number) => void = () => {}): void {
  const body = Buffer.from(message, "utf8");
  const text = `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n\r\n`;
  endAndDrop(socket, head, Buffer.concat([Buffer.from(text, "latin1"), body]), onRead);
}

function endAndDrop(socket: Duplex, head: Buffer, bytes: Buffer, onRead: (bytes: number) => void): void {
  let read = head.length;
  onRead(head.length);
  const cut = () => void socket.destroy();
  const linger = setTimeout(cut, REFUSED_LINGER_MS);
  linger.unref();
  socket.on("error", () => {});
  socket.on("close", () => clearTimeout(linger));
  socket.on("end", cut);
  socket.on("data", (chunk: Buffer) => {
    read += chunk.length;
    onRead(chunk.length);
    if (read > REFUSED_READ_BUDGET) cut();
  });
  if (read > REFUSED_READ_BUDGET) return cut();
  socket.end(bytes);
}
