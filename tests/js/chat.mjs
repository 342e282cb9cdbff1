// Drive Parley with the official JavaScript Socket.IO client (socket.io-client v4,
// protocol v5). Used by tests/e2e/test_js_client.py; one JSON object per stdout line.
//
//   node chat.mjs <server-url> <access-token> <conversation-id> <mode> [websocket|polling]
//
// Modes:
//   send      connect, emit message:send with an ack, print the ack ({"data": ...} or
//             {"error": ...}) as received, then print the message:new echo of that message
//   receive   connect, print the first message:new of the conversation as received
//   refused   connect (with a token the server must refuse), print the connect_error
//             as {"message": err.message, "data": err.data}
//
// Connected modes print {"connected": true, ...} first. The transport is the fifth
// argument, else $PARLEY_JS_TRANSPORT, else "websocket". $PARLEY_JS_TEXT sets the
// text that send mode sends.
//
// Exit codes: 0 done, 1 unexpected error (reason on stderr), 2 hard timeout (15 s).

import { randomUUID } from "node:crypto";
import { io } from "socket.io-client";

const HARD_TIMEOUT_MS = 15_000;
const ACK_TIMEOUT_MS = 10_000;
const MODES = new Set(["send", "receive", "refused"]);
const TRANSPORTS = new Set(["websocket", "polling"]);

const [url, token, conversationId, mode, transportArg] = process.argv.slice(2);
const transport = transportArg || process.env.PARLEY_JS_TRANSPORT || "websocket";

let socket = null;
let finished = false;

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function finish(code, reason) {
  if (finished) return;
  finished = true;
  if (reason !== undefined) {
    process.stderr.write(`chat.mjs: ${reason}\n`);
  }
  if (socket) {
    socket.disconnect();
  }
  // Exit once stdout has been flushed to the pipe.
  process.stdout.write("", () => process.exit(code));
}

function fail(reason) {
  finish(1, reason instanceof Error ? reason.stack || reason.message : String(reason));
}

process.on("uncaughtException", fail);
process.on("unhandledRejection", fail);

setTimeout(
  () => finish(2, `hard timeout: nothing finished within ${HARD_TIMEOUT_MS / 1000} s (mode ${mode})`),
  HARD_TIMEOUT_MS,
);

if (!url || token === undefined || !conversationId || !MODES.has(mode)) {
  fail(
    "usage: node chat.mjs <server-url> <access-token> <conversation-id> " +
      "<send|receive|refused> [websocket|polling]",
  );
} else if (!TRANSPORTS.has(transport)) {
  fail(`unknown transport ${JSON.stringify(transport)}: use websocket or polling`);
} else {
  run();
}

function run() {
  socket = io(url, {
    auth: { token },
    transports: [transport],
    reconnection: false,
    timeout: 10_000,
  });

  if (mode === "refused") {
    socket.on("connect", () => fail("the server accepted a connection it should have refused"));
    socket.on("connect_error", (err) => {
      print({ message: err.message, data: err.data ?? null });
      finish(0);
    });
    return;
  }

  // Collect message:new from the first moment: the echo may overtake the ack.
  const seen = [];
  let waitingFor = null; // the ack'd message id, in send mode

  socket.on("message:new", (message) => {
    if (finished) return;
    if (mode === "receive") {
      if (message && message.conversation_id === conversationId) {
        print(message);
        finish(0);
      }
      return;
    }
    seen.push(message);
    if (waitingFor !== null && message && message.id === waitingFor) {
      print(message);
      finish(0);
    }
  });

  socket.on("connect_error", (err) => {
    fail(`connect_error: ${err.message} ${JSON.stringify(err.data ?? null)}`);
  });

  socket.on("disconnect", (reason) => {
    if (!finished) fail(`disconnected before finishing: ${reason}`);
  });

  socket.on("connect", async () => {
    print({
      connected: true,
      id: socket.id,
      transport: socket.io.engine.transport.name,
    });
    if (mode !== "send") return;

    const payload = {
      conversation_id: conversationId,
      client_msg_id: `js-${randomUUID()}`,
      kind: "text",
      body: { text: process.env.PARLEY_JS_TEXT || "hello from socket.io-client" },
    };
    let ack;
    try {
      ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("message:send", payload);
    } catch (err) {
      fail(`message:send was not acked: ${err.message}`);
      return;
    }
    print(ack);
    if (!ack || typeof ack !== "object" || !ack.data || typeof ack.data.id !== "string") {
      fail(`message:send was refused: ${JSON.stringify(ack)}`);
      return;
    }
    waitingFor = ack.data.id;
    const echo = seen.find((m) => m && m.id === waitingFor);
    if (echo) {
      print(echo);
      finish(0);
    }
  });
}
