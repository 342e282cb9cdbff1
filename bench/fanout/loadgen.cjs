// bench/fanout's load generator with Node's socket.io-client (tests/js/node_modules),
// for the client-cost comparison (`run.py --part clients`) or as the generator
// (`run.py --client node`). Same commands and replies as client/loadtest/generator.py,
// as JSON lines: the spec on the first stdin line, then one command per line;
// one reply per stdout line. Latency arrays go back as base64 of float32 seconds.
//
//   node bench/fanout/loadgen.cjs < commands

"use strict";

const path = require("node:path");
const readline = require("node:readline");
const { performance } = require("node:perf_hooks");

const ROOT = path.resolve(__dirname, "..", "..");
const { io } = require(path.join(ROOT, "tests", "js", "node_modules", "socket.io-client"));

const now = () => (performance.timeOrigin + performance.now()) / 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

let spec = null;
let clients = [];
let state = null;
let disconnects = 0;

class FloatList {
  constructor() {
    this.data = new Float32Array(1 << 16);
    this.length = 0;
  }
  push(x) {
    if (this.length === this.data.length) {
      const bigger = new Float32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = x;
  }
  base64() {
    return Buffer.from(this.data.buffer, 0, this.length * 4).toString("base64");
  }
}

// client_msg_id: `<tag><run>.<send time µs>.<pid>-<session>-<n>` (client/loadtest/generator.py).
function onNew(data) {
  const t = now();
  if (state === null) return;
  const cmid = (data && data.client_msg_id) || "";
  if (!cmid.startsWith(state.prefix)) {
    if (cmid.startsWith(spec.tag || "B")) state.foreign += 1;
    return;
  }
  const stamp = parseInt(cmid.slice(state.prefix.length).split(".", 1)[0], 10) / 1e6;
  state.latency.push(t - stamp);
  state.receivedAt.push(t - state.start);
  state.delivered += 1;
  state.lastDelivery = t;
  if (t < state.end) state.inWindow += 1;
}

function makeClient(index, session) {
  const token = session.access_token;
  const userId = session.user_id;
  const conversationId = session.conversation_id;
  const client = { index, token, userId, conversationId, ack: 0, socket: null, connected: false };
  client.connect = () =>
    new Promise((resolve, reject) => {
      const socket = io(spec.url, {
        auth: { token },
        transports: ["websocket"],
        reconnection: false,
        timeout: 30_000,
        perMessageDeflate: spec.compression ? { threshold: 1024 } : false,
        forceNew: true,
      });
      client.socket = socket;
      socket.on("message:new", onNew);
      socket.once("connect", () => {
        client.connected = true;
        resolve();
      });
      socket.once("connect_error", (err) => {
        socket.close();
        reject(err);
      });
      socket.on("disconnect", () => {
        if (client.connected) disconnects += 1;
        client.connected = false;
      });
    });
  return client;
}

async function connectAll(concurrency) {
  const started = performance.now();
  const errors = {};
  let next = 0;
  let connected = 0;
  async function worker() {
    while (next < clients.length) {
      const client = clients[next++];
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await client.connect();
          connected += 1;
          break;
        } catch (err) {
          const name = String(err && err.message).slice(0, 120);
          errors[name] = (errors[name] || 0) + 1;
          await sleep(200 * (attempt + 1));
        }
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return {
    connected,
    failed: clients.length - connected,
    errors,
    seconds: (performance.now() - started) / 1000,
  };
}

async function run(cmd) {
  const { rate, start_at: startAt, duration, drain } = cmd;
  const pad = "x".repeat(Math.max(1, cmd.text_bytes || 64));
  state = {
    prefix: `${spec.tag || "B"}${cmd.run}.`,
    start: startAt,
    end: startAt + duration,
    lastDelivery: 0,
    delivered: 0,
    inWindow: 0,
    foreign: 0,
    latency: new FloatList(),
    receivedAt: new FloatList(),
    ackLatency: new FloatList(),
    ackedAt: new FloatList(),
    acked: 0,
    ackErrors: {},
    pending: 0,
  };
  const s = state;
  // Consecutive sends go to different groups (see _senders in client/loadtest/generator.py).
  const seen = new Map();
  const senders = clients
    .filter((c) => c.connected)
    .map((c) => {
      const rank = seen.get(c.conversationId) || 0;
      seen.set(c.conversationId, rank + 1);
      return [rank, c.index, c];
    })
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .map((t) => t[2]);
  // Exactly rate x duration messages, paced evenly over the window.
  const total = senders.length ? Math.round(rate * duration) : 0;
  await sleep(Math.max(0, (startAt - now()) * 1000));
  const cpuStart = cpuSeconds();
  let sent = 0;
  let maxBehind = 0;
  let turn = 0;
  while (sent < total) {
    const t = now();
    if (t >= s.end + 1.0) break;
    const due = Math.min(total, Math.floor((t - startAt) * rate) + 1);
    maxBehind = Math.max(maxBehind, due - sent);
    while (sent < due) {
      const client = senders[turn];
      turn = (turn + 1) % senders.length;
      const stamp = now();
      const id = ++client.ack;
      const cmid = `${s.prefix}${Math.floor(stamp * 1e6)}.${process.pid}-${client.index}-${id}`;
      s.pending += 1;
      client.socket.emit(
        "message:send",
        {
          conversation_id: client.conversationId,
          client_msg_id: cmid,
          kind: "text",
          body: { text: pad },
        },
        (ack) => {
          s.pending -= 1;
          if (ack && ack.data) {
            const t = now();
            s.ackLatency.push(t - stamp);
            s.ackedAt.push(t - s.start);
            s.acked += 1;
          } else {
            const code = (ack && ack.error && ack.error.code) || "error";
            s.ackErrors[code] = (s.ackErrors[code] || 0) + 1;
          }
        },
      );
      sent += 1;
    }
    await sleep(2);
  }
  await sleep(Math.max(0, (s.end - now()) * 1000));
  const cpuWindow = cpuSeconds() - cpuStart;
  const deadline = s.end + drain;
  while (now() < deadline) {
    const quietSince = Math.max(s.lastDelivery, s.end);
    if (now() - quietSince > 1.0 && s.pending === 0) break;
    await sleep(50);
  }
  state = null;
  return {
    sent,
    acked: s.acked,
    ack_errors: s.ackErrors,
    unacked: s.pending,
    delivered: s.delivered,
    delivered_in_window: s.inWindow,
    foreign: s.foreign,
    max_behind: maxBehind,
    cpu_seconds: cpuWindow,
    disconnects,
    latency_b64: s.latency.base64(),
    received_at_b64: s.receivedAt.base64(),
    ack_latency_b64: s.ackLatency.base64(),
    acked_at_b64: s.ackedAt.base64(),
  };
}

const lines = readline.createInterface({ input: process.stdin });
const reply = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let queue = Promise.resolve();
lines.on("line", (line) => {
  const message = JSON.parse(line);
  queue = queue.then(async () => {
    if (spec === null) {
      spec = message;
      clients = spec.sessions.map((c, i) => makeClient(i, c));
      reply({ ready: true });
    } else if (message.cmd === "connect") {
      reply(await connectAll(message.concurrency || 50));
    } else if (message.cmd === "run") {
      reply(await run(message));
    } else if (message.cmd === "close") {
      for (const c of clients) if (c.socket) c.socket.close();
      reply({ closed: true });
      process.exit(0);
    } else {
      reply({ error: `unknown command ${message.cmd}` });
    }
  });
});
