// A seed client driven line by line, for tests/e2e/test_seed_compat.py: the official
// socket.io JavaScript client (socket.io-client 4.x) and Node's fetch, as the seed's own
// clients use them. Reads one JSON command per line on stdin, writes one JSON line per
// result and per event received on stdout.
//   {"op": "connect", "url": "..."}              -> {"op": "connected"} or {"op": "connect_error", ...}
//   {"op": "emit", "event": "...", "data": ...}   (data sent as given: a string stays a string)
//   {"op": "http", "method", "url", "body"}      -> {"op": "http", "status", "text"}
//   every server event                           -> {"op": "event", "event", "data"}
"use strict";
const readline = require("node:readline");
const { io } = require("socket.io-client");

let socket = null;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function run(cmd) {
  if (cmd.op === "connect") {
    socket = io(cmd.url, { transports: ["websocket"], reconnection: false });
    socket.onAny((event, data) => out({ op: "event", event, data }));
    socket.on("connect", () => out({ op: "connected" }));
    socket.on("connect_error", (err) => out({ op: "connect_error", message: String(err) }));
  } else if (cmd.op === "emit") {
    socket.emit(cmd.event, cmd.data);
  } else if (cmd.op === "http") {
    const response = await fetch(cmd.url, {
      method: cmd.method,
      headers: { "Content-Type": "application/json", ...(cmd.headers || {}) },
      body: cmd.body == null ? undefined : JSON.stringify(cmd.body),
    });
    out({ op: "http", status: response.status, text: await response.text() });
  } else if (cmd.op === "close") {
    if (socket) socket.close();
    process.exit(0);
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  run(JSON.parse(line)).catch((err) => out({ op: "error", message: String(err) }));
});
