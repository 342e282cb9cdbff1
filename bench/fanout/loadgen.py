"""Load-generator processes for ``bench/fanout``: each owns a slice of the clients.

The parent (``bench/fanout/run.py``) starts several of these with
``multiprocessing`` and drives them over a pipe, one command at a time:

    {"cmd": "connect", "concurrency": 50}
        open every socket of the slice; reply {"connected", "failed", "errors", "seconds"}
    {"cmd": "run", "run": 1, "rate": 500.0, "start_at": <time.time()>, "duration": 15,
     "drain": 5, "text_bytes": 64}
        from ``start_at`` send ``rate`` messages/s (spread round-robin over the slice's
        clients, each to its own group) for ``duration`` s, keep receiving until
        ``drain`` s after the end (or until deliveries stop), reply with counts and
        latencies (see ``Generator.run``)
    {"cmd": "close"}
        close every socket, reply, exit

Every message's text starts ``t=<send time> r=<run>``: a receiver takes its
receive time minus the send time (both ``time.time()``, one machine, one clock)
and only counts messages of the current run.

Client kinds, for the cost comparison (``run.py --part clients``):

* ``ws``: a raw Socket.IO v5 / Engine.IO v4 client over one ``websockets``
  connection: "0" open, "40{auth}" connect, "42[...]" events, "42<id>[...]"
  emits with an ack and "43<id>[...]" acks, "2" ping answered "3". Each frame is
  handled in the ``websockets`` sans-I/O protocol's callback, with no task or
  queue per message.
* ``ws-asyncio``: the same client on ``websockets``' asyncio API (a reader task
  per connection, ``async for frame in ws``).
* ``sio``: python-socketio's ``AsyncClient`` (what ``client/sdk.py`` uses).

``bench/fanout/loadgen.cjs`` is the same generator with Node's socket.io-client.
"""

from __future__ import annotations

import abc
import array
import asyncio
import base64
import contextlib
import os
import resource
import time
from multiprocessing.connection import Connection
from typing import Any

import orjson

NEW_PREFIX = '42["message:new",'
TEXT_MARK = '"text":"t='


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (max(hard, 65536), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            continue
    return soft


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RunState:
    """What one timed run collects in this process."""

    def __init__(self, run: int, start: float, end: float) -> None:
        self.tag = f" r={run} "
        self.start = start
        self.end = end
        self.last_delivery = 0.0
        self.delivered = 0
        self.in_window = 0
        self.foreign = 0  # deliveries of other runs' messages (late leftovers)
        self.latency = array.array("f")
        self.received_at = array.array("f")  # seconds since the start, per delivery
        self.ack_latency = array.array("f")
        self.acked_at = array.array("f")
        self.acked = 0
        self.ack_errors: dict[str, int] = {}
        self.pending: dict[tuple[int, int], float] = {}


class Generator:
    """The clients of one process and the current run's counters."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.url = spec["url"]
        self.kind = spec["kind"]
        self.compression = spec.get("compression", False)
        self.clients: list[Any] = []
        for index, (token, user_id, conversation_id) in enumerate(spec["clients"]):
            self.clients.append(make_client(self, index, token, user_id, conversation_id))
        self.state: RunState | None = None
        self.disconnects = 0
        self.other_events = 0

    # -- frames from the server ----------------------------------------------

    def on_new_message(self, frame: str) -> None:
        now = time.time()
        state = self.state
        if state is None:
            return
        at = frame.find(TEXT_MARK)
        if at < 0:
            self.other_events += 1  # a system message (group created, ...)
            return
        at += len(TEXT_MARK)
        space = frame.find(" ", at)
        if frame[space : space + len(state.tag)] != state.tag:
            state.foreign += 1
            return
        state.latency.append(now - float(frame[at:space]))
        state.received_at.append(now - state.start)
        state.delivered += 1
        state.last_delivery = now
        if now < state.end:
            state.in_window += 1

    def on_ack(self, client_index: int, ack_id: int, ok: bool, code: str) -> None:
        state = self.state
        if state is None:
            return
        sent_at = state.pending.pop((client_index, ack_id), None)
        if sent_at is None:
            return
        if ok:
            state.acked += 1
            now = time.time()
            state.ack_latency.append(now - sent_at)
            state.acked_at.append(now - state.start)
        else:
            state.ack_errors[code] = state.ack_errors.get(code, 0) + 1

    # -- commands --------------------------------------------------------------

    async def connect(self, concurrency: int) -> dict[str, Any]:
        started = time.perf_counter()
        semaphore = asyncio.Semaphore(concurrency)
        errors: dict[str, int] = {}

        async def one(client: Any) -> bool:
            async with semaphore:
                for attempt in range(3):
                    try:
                        await client.connect(self.url)
                        return True
                    except Exception as exc:  # counted and reported
                        name = f"{type(exc).__name__}: {str(exc)[:120]}"
                        errors[name] = errors.get(name, 0) + 1
                        await asyncio.sleep(0.2 * (attempt + 1))
                return False

        results = await asyncio.gather(*(one(c) for c in self.clients))
        return {
            "connected": sum(results),
            "failed": len(results) - sum(results),
            "errors": errors,
            "seconds": time.perf_counter() - started,
        }

    async def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        rate = float(cmd["rate"])
        start_at = float(cmd["start_at"])
        duration = float(cmd["duration"])
        drain = float(cmd["drain"])
        run = int(cmd["run"])
        pad = "x" * max(0, int(cmd.get("text_bytes", 64)) - 32)
        state = RunState(run, start_at, start_at + duration)
        senders = self.sending_order()
        # Exactly rate x duration messages, paced evenly over the window.
        total = round(rate * duration) if senders else 0
        await asyncio.sleep(max(0.0, start_at - time.time()))
        self.state = state
        cpu_start = cpu_seconds()
        sent = 0
        max_behind = 0
        turn = 0
        tag = state.tag
        pending = state.pending
        while sent < total:
            now = time.time()
            if now >= state.end + 1.0:
                break  # this process could not keep up: reported as sent < offered
            due = min(total, int((now - start_at) * rate) + 1)
            max_behind = max(max_behind, due - sent)
            while sent < due:
                client = senders[turn]
                turn = (turn + 1) % len(senders)
                stamp = time.time()
                ack_id = client.next_ack_id()
                pending[(client.index, ack_id)] = stamp
                client.send_message(ack_id, f"t={stamp:.6f}{tag}{pad}")
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.sleep(max(0.0, state.end - time.time()))
        cpu_window = cpu_seconds() - cpu_start
        # Drain: until ``drain`` s after the end, or 1 s without a delivery.
        deadline = state.end + drain
        while time.time() < deadline:
            quiet_since = max(state.last_delivery, state.end)
            if time.time() - quiet_since > 1.0 and not pending:
                break
            await asyncio.sleep(0.05)
        self.state = None
        return {
            "sent": sent,
            "acked": state.acked,
            "ack_errors": state.ack_errors,
            "unacked": len(pending),
            "delivered": state.delivered,
            "delivered_in_window": state.in_window,
            "foreign": state.foreign,
            "max_behind": max_behind,
            "cpu_seconds": cpu_window,
            "disconnects": self.disconnects,
            "latency": state.latency.tobytes(),
            "received_at": state.received_at.tobytes(),
            "ack_latency": state.ack_latency.tobytes(),
            "acked_at": state.acked_at.tobytes(),
        }

    def sending_order(self) -> list[Any]:
        """Connected clients, ordered so that consecutive sends go to different groups
        (one member of each group, then a second of each, ...): a steady rate per
        group rather than bursts into one conversation (whose sends serialize on its
        seq row lock)."""
        seen: dict[str, int] = {}
        ranked = []
        for client in self.clients:
            if client.connected:
                rank = seen.get(client.conversation_id, 0)
                seen[client.conversation_id] = rank + 1
                ranked.append((rank, client.index, client))
        return [client for _, _, client in sorted(ranked, key=lambda t: (t[0], t[1]))]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


# -- clients -------------------------------------------------------------------


def make_client(gen: Generator, index: int, token: str, user_id: str, conversation_id: str) -> Any:
    if gen.kind == "raw":
        return FramedClient(gen, index, token, user_id, conversation_id)
    if gen.kind == "ws":
        return SansIOClient(gen, index, token, user_id, conversation_id)
    if gen.kind == "ws-asyncio":
        return AsyncioClient(gen, index, token, user_id, conversation_id)
    if gen.kind == "sio":
        return SioClient(gen, index, token, user_id, conversation_id)
    raise ValueError(f"unknown client kind {gen.kind!r}")


class _RawBase(abc.ABC):
    """Socket.IO v5 framing shared by the raw clients."""

    def __init__(
        self, gen: Generator, index: int, token: str, user_id: str, conversation_id: str
    ) -> None:
        self.gen = gen
        self.index = index
        self.token = token
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.connected = False
        self._ack = 0
        self._send_head = (
            '["message:send",{"conversation_id":"' + conversation_id + '","client_msg_id":"'
        )
        self._msg_prefix = f"{os.getpid()}-{index}-"

    def next_ack_id(self) -> int:
        self._ack += 1
        return self._ack

    def message_frame(self, ack_id: int, text: str) -> str:
        return (
            f"42{ack_id}{self._send_head}{self._msg_prefix}{ack_id}"
            f'","kind":"text","body":{{"text":"{text}"}}}}]'
        )

    def handle_frame(self, frame: str) -> None:
        if frame.startswith(NEW_PREFIX):
            self.gen.on_new_message(frame)
        elif frame.startswith("43"):
            bracket = frame.index("[")
            ok = frame.startswith('[{"data"', bracket)
            code = ""
            if not ok:
                with contextlib.suppress(Exception):
                    code = orjson.loads(frame[bracket:])[0]["error"]["code"]
            self.gen.on_ack(self.index, int(frame[2:bracket]), ok, code or "error")
        elif frame == "2":
            self.send_raw("3")
        elif frame.startswith("42"):
            self.gen.other_events += 1
        elif frame.startswith("41") or frame.startswith("1"):
            self.connected = False

    @abc.abstractmethod
    def send_raw(self, frame: str) -> None:
        """Write one engine.io text frame on this client's transport."""

    def send_message(self, ack_id: int, text: str) -> None:
        self.send_raw(self.message_frame(ack_id, text))


class SansIOClient(_RawBase):
    """``websockets``' sans-I/O ClientProtocol on an asyncio transport: no task per socket."""

    async def connect(self, url: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
        from websockets.uri import parse_uri

        loop = asyncio.get_running_loop()
        uri = parse_uri(url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket")
        extensions = [ClientPerMessageDeflateFactory()] if self.gen.compression else None
        self.proto = ClientProtocol(uri, extensions=extensions, max_size=2**20)
        self.opened: asyncio.Future[str] = loop.create_future()
        self.stage = "handshake"
        self.transport, _ = await loop.create_connection(
            lambda: _Transport(self), uri.host, uri.port
        )
        self.request = self.proto.connect()
        self.proto.send_request(self.request)
        self._flush()
        try:
            reply = await asyncio.wait_for(self.opened, 30)
        except BaseException:
            self.transport.abort()
            raise
        if not reply.startswith("40"):
            self.transport.abort()
            raise ConnectionError(f"refused: {reply[:200]}")
        self.connected = True

    def _flush(self) -> None:
        data = self.proto.data_to_send()
        if data:
            self.transport.writelines(data)

    def received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        self.proto.receive_data(data)
        for event in self.proto.events_received():
            if isinstance(event, Response):
                if event.status_code != 101:
                    self._fail(f"handshake {event.status_code}")
                continue
            if not isinstance(event, Frame) or event.opcode is not Opcode.TEXT:
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    self.connected = False
                continue
            data = event.data
            frame = data.decode() if isinstance(data, bytes) else bytes(data).decode()
            if self.stage == "ready":
                self.handle_frame(frame)
            elif self.stage == "handshake" and frame.startswith("0"):
                self.stage = "auth"
                self.send_raw("40" + orjson.dumps({"token": self.token}).decode())
            elif self.stage == "auth" and frame[:2] in ("40", "44"):
                self.stage = "ready"
                if not self.opened.done():
                    self.opened.set_result(frame)
            elif frame == "2":
                self.send_raw("3")
        self._flush()

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))

    def lost(self) -> None:
        if self.connected:
            self.gen.disconnects += 1
        self.connected = False
        self._fail("connection lost")

    def send_raw(self, frame: str) -> None:
        self.proto.send_text(frame.encode())
        self._flush()

    async def close(self) -> None:
        if getattr(self, "transport", None) is not None:
            self.connected = False
            self.transport.close()


class _Transport(asyncio.Protocol):
    def __init__(self, client: SansIOClient) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost()


class FramedClient(_RawBase):
    """RFC 6455 framing by hand on an asyncio transport (masking with ``websockets``'
    C helper): the server's frames are unmasked and unfragmented here, so reading
    one is a header check and a slice. No compression (``--compression`` is refused)."""

    async def connect(self, url: str) -> None:
        if self.gen.compression:
            raise ValueError("the raw client does not do permessage-deflate")
        loop = asyncio.get_running_loop()
        host, _, port = url.removeprefix("http://").partition(":")
        self.buffer = bytearray()
        self.handshaken = False
        self.stage = "handshake"
        self.partial: list[bytes] = []
        self.opened: asyncio.Future[str] = loop.create_future()
        self.transport, _ = await loop.create_connection(
            lambda: _FramedTransport(self), host, int(port)
        )
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        try:
            reply = await asyncio.wait_for(self.opened, 30)
        except BaseException:
            self.transport.abort()
            raise
        if not reply.startswith("40"):
            self.transport.abort()
            raise ConnectionError(f"refused: {reply[:200]}")
        self.connected = True

    def received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail(f"handshake: {bytes(buffer[:80])!r}")
                return
            del buffer[: end + 4]
            self.handshaken = True
        at = 0
        size = len(buffer)
        while size - at >= 2:
            head, length = buffer[at], buffer[at + 1] & 0x7F
            start = at + 2
            if length == 126:
                if size - at < 4:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 4], "big")
                start = at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 10], "big")
                start = at + 10
            if size - start < length:
                break
            payload = bytes(buffer[start : start + length])
            at = start + length
            opcode = head & 0x0F
            if opcode in (1, 0):  # text, continuation
                if not head & 0x80:
                    self.partial.append(payload)
                    continue
                if self.partial:
                    payload = b"".join([*self.partial, payload])
                    self.partial = []
                self._text(payload.decode())
            elif opcode == 9:  # ping
                self._write(0x8A, payload)
            elif opcode == 8:  # close
                self.connected = False
                self.transport.close()
        del buffer[:at]

    def _text(self, frame: str) -> None:
        if self.stage == "ready":
            self.handle_frame(frame)
        elif self.stage == "handshake" and frame.startswith("0"):
            self.stage = "auth"
            self.send_raw("40" + orjson.dumps({"token": self.token}).decode())
        elif self.stage == "auth" and frame[:2] in ("40", "44"):
            self.stage = "ready"
            if not self.opened.done():
                self.opened.set_result(frame)
        elif frame == "2":
            self.send_raw("3")

    def _write(self, head: int, payload: bytes) -> None:
        from websockets.speedups import apply_mask

        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = bytes((head, 0x80 | n))
        elif n < 65536:
            header = bytes((head, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((head, 0x80 | 127)) + n.to_bytes(8, "big")
        self.transport.write(header + mask + apply_mask(payload, mask))

    def send_raw(self, frame: str) -> None:
        self._write(0x81, frame.encode())

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
        self.transport.abort()

    def lost(self) -> None:
        if self.connected:
            self.gen.disconnects += 1
        self.connected = False
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("connection lost"))

    async def close(self) -> None:
        if getattr(self, "transport", None) is not None:
            self.connected = False
            self.transport.close()


class _FramedTransport(asyncio.Protocol):
    def __init__(self, client: FramedClient) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost()


class AsyncioClient(_RawBase):
    """The same client on ``websockets``' asyncio API: a reader task per socket."""

    async def connect(self, url: str) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
            compression="deflate" if self.gen.compression else None,
            ping_interval=None,
            open_timeout=30,
            close_timeout=1,
            max_size=2**20,
        )
        opening = await self.ws.recv()
        if not isinstance(opening, str) or not opening.startswith("0"):
            raise ConnectionError(f"unexpected open packet {opening!r:.200}")
        await self.ws.send("40" + orjson.dumps({"token": self.token}).decode())
        reply = await self.ws.recv()
        if not isinstance(reply, str) or not reply.startswith("40"):
            await self.ws.close()
            raise ConnectionError(f"refused: {reply!r:.200}")
        self.connected = True
        self.task = asyncio.get_running_loop().create_task(self._read())
        self._sending: set[asyncio.Task[None]] = set()

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in self.ws:
                if isinstance(frame, str):
                    self.handle_frame(frame)
        except ConnectionClosed:
            pass
        if self.connected:
            self.gen.disconnects += 1
        self.connected = False

    def send_raw(self, frame: str) -> None:
        task = asyncio.get_running_loop().create_task(self.ws.send(frame))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        self.connected = False
        if getattr(self, "ws", None) is not None:
            await self.ws.close()


class SioClient:
    """python-socketio's AsyncClient, as ``client/sdk.py`` uses it."""

    def __init__(
        self, gen: Generator, index: int, token: str, user_id: str, conversation_id: str
    ) -> None:
        import socketio

        from realtime import codec

        self.gen = gen
        self.index = index
        self.token = token
        self.conversation_id = conversation_id
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False, json=codec)
        self.sio.on("message:new", self._on_new)
        self._ack = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._msg_prefix = f"{os.getpid()}-{index}-"

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    async def connect(self, url: str) -> None:
        await self.sio.connect(
            url, auth={"token": self.token}, transports=["websocket"], wait_timeout=30, retry=False
        )

    def next_ack_id(self) -> int:
        self._ack += 1
        return self._ack

    async def _on_new(self, data: dict[str, Any]) -> None:
        text = data.get("body", {}).get("text", "")
        # Reuse the raw parser: rebuild the fragment it looks for.
        self.gen.on_new_message('"text":"' + text)

    def send_message(self, ack_id: int, text: str) -> None:
        payload = {
            "conversation_id": self.conversation_id,
            "client_msg_id": f"{self._msg_prefix}{ack_id}",
            "kind": "text",
            "body": {"text": text},
        }

        def on_ack(result: Any) -> None:
            ok = isinstance(result, dict) and "data" in result
            code = "" if ok else str((result or {}).get("error", {}).get("code", "error"))
            self.gen.on_ack(self.index, ack_id, ok, code)

        task = asyncio.get_running_loop().create_task(
            self.sio.emit("message:send", payload, callback=on_ack)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await self.sio.disconnect()


# -- process entry ---------------------------------------------------------------


async def _serve(conn: Connection, spec: dict[str, Any]) -> None:
    gen = Generator(spec)
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        name = cmd["cmd"]
        if name == "connect":
            reply = await gen.connect(int(cmd.get("concurrency", 50)))
        elif name == "run":
            reply = await gen.run(cmd)
        elif name == "close":
            await gen.close()
            conn.send({"closed": True})
            return
        else:
            reply = {"error": f"unknown command {name!r}"}
        conn.send(reply)


def worker_main(conn: Connection, spec: dict[str, Any]) -> None:
    """multiprocessing target: serve the parent's commands until "close"."""
    raise_fd_limit()
    import uvloop

    uvloop.run(_serve(conn, spec))
