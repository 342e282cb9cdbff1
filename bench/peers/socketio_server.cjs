// The peer: Node.js socket.io 4 with @socket.io/redis-adapter doing the room
// fan-out Parley does, as a Socket.IO server most people would write it.
//
//   node bench/peers/socketio_server.cjs --port 9100 [--redis redis://127.0.0.1:6379/13]
//
// A socket connects with auth {token: "<user id>|<conversation id>"} (no
// sign-in: connection set-up is outside the measured window) and joins the
// conversation's room. `message:send` ({conversation_id, client_msg_id, kind,
// body}, with an ack) from a member of that room gets the conversation's next
// seq (in memory: nothing is persisted), is acked {data: message} and emitted
// as `message:new` to the room, on every process through Redis when --redis
// is given. The message has the fields of Parley's (docs/PROTOCOL.md).

"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { Server } = require("socket.io");

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : fallback;
}

const port = Number(option("port", "9100"));
const redisUrl = option("redis", "");
const seqs = new Map();

async function main() {
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === "/readyz" ? 200 : 404).end();
  });
  const io = new Server(server, {
    transports: ["websocket"],
    perMessageDeflate: false,
    pingInterval: 25000,
    pingTimeout: 20000,
    maxHttpBufferSize: 1e6,
  });
  if (redisUrl) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: "peers-socket.io" }));
  }
  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (typeof token !== "string" || !token.includes("|")) {
      return next(new Error("unauthenticated"));
    }
    const [userId, conversationId] = token.split("|");
    socket.data.userId = userId;
    socket.data.conversationId = conversationId;
    next();
  });
  io.on("connection", (socket) => {
    socket.join(`conv:${socket.data.conversationId}`);
    socket.on("message:send", (payload, ack) => {
      if (typeof ack !== "function") return;
      if (
        !payload ||
        typeof payload.conversation_id !== "string" ||
        typeof payload.client_msg_id !== "string" ||
        payload.client_msg_id.length > 64 ||
        typeof payload.body !== "object"
      ) {
        return ack({ error: { code: "invalid_request", message: "bad payload" } });
      }
      if (payload.conversation_id !== socket.data.conversationId) {
        return ack({ error: { code: "not_a_member", message: "not a member" } });
      }
      const seq = (seqs.get(payload.conversation_id) || 0) + 1;
      seqs.set(payload.conversation_id, seq);
      const message = {
        id: crypto.randomUUID(),
        conversation_id: payload.conversation_id,
        seq,
        sender_id: socket.data.userId,
        client_msg_id: payload.client_msg_id,
        kind: payload.kind,
        body: payload.body,
        created_at: new Date().toISOString(),
        edited_at: null,
        deleted_at: null,
      };
      ack({ data: message });
      io.to(`conv:${payload.conversation_id}`).emit("message:new", message);
    });
  });
  server.listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
