"""Graceful drain on SIGTERM (ARCHITECTURE.md section 10).

The first SIGTERM marks the node as draining: ``/readyz`` answers 503 and new
Socket.IO connections are refused with 503 (:class:`RefuseNewSockets`; a
balancer retries them on another node). Then every socket is moved, in slices
over at most a second: its in-flight events finish and their acks go out, and
its transport is dropped, which clients answer by reconnecting, through the
balancer, to another node (pending long-polls end at once). Only then does
uvicorn's own shutdown begin: it stops accepting and lets in-flight HTTP
requests finish within ``PARLEY_SERVER_DRAIN_GRACE_SECONDS``. A second SIGTERM
skips the drain.

A shutdown never keeps a node alive: if the process has not exited
``_EXIT_MARGIN`` seconds after the drain and the grace period should have
ended, it logs what every thread and task was doing and exits. A worker of
``parley serve --workers N`` is told to drain (SIGTERM) when its supervisor
dies, rather than serving on alone, unsupervised, on the shared port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import faulthandler
import io
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

import orjson

from server.container import Services

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SOCKET_PATH = "/socket.io/"
# How long a drain spends dropping sockets, at most; the rest of the grace
# period is uvicorn's, for in-flight HTTP requests.
_SPREAD_CAP = 1.0
# How long, past the spread, in-flight events may take to finish (one budget
# for the whole drain) before the remaining sockets are dropped anyway.
_SETTLE_CAP = 5.0
# How long, past the drain and the grace period, closing the pools may take
# before the process gives up on a clean shutdown.
_EXIT_MARGIN = 15.0
_PR_SET_PDEATHSIG = 1


def drain_timings(grace: float) -> tuple[float, float]:
    """``(spread, settle)`` in seconds for a grace period of ``grace`` seconds."""
    return min(_SPREAD_CAP, grace / 10), min(_SETTLE_CAP, grace / 2)


@contextmanager
def drain_on_sigterm(services: Services) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread
        return
    loop = asyncio.get_running_loop()
    previous: Any = signal.getsignal(signal.SIGTERM)
    tasks: set[asyncio.Task[None]] = set()
    grace = float(services.settings.server.drain_grace_seconds)
    spread, settle = drain_timings(grace)

    def hand_over() -> None:
        if callable(previous):
            previous(signal.SIGTERM, None)

    async def drain() -> None:
        log.info("SIGTERM: draining", extra={"sockets": services.hub.local_socket_count})
        try:
            await services.hub.drain(spread=spread, settle=settle)
            log.info("drained: every socket moved", extra={"sockets": 0})
        finally:
            hand_over()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if services.draining:
            loop.call_soon_threadsafe(hand_over)
            return
        services.draining = True
        _exit_if_stuck(loop, spread + settle + grace + _EXIT_MARGIN)

        def start() -> None:
            task = loop.create_task(drain())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.call_soon_threadsafe(start)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_if_stuck(loop: asyncio.AbstractEventLoop, limit: float) -> None:
    """Exit the process if it is still running ``limit`` seconds from now."""

    def expire() -> None:
        stacks = io.StringIO()
        with contextlib.suppress(RuntimeError):  # the task set changed under us
            for task in list(asyncio.all_tasks(loop)):
                task.print_stack(limit=8, file=stacks)
        log.error(
            "shutdown not finished %g s after SIGTERM: exiting without it; tasks:\n%s",
            limit,
            stacks.getvalue(),
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(1)

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()


def follow_supervisor() -> None:
    """In a worker process: drain (SIGTERM) when the process that started it dies.

    ``parley serve --workers N`` runs workers under uvicorn's supervisor; if the
    supervisor is killed (SIGKILL, the OOM killer) its workers would otherwise
    keep serving on the shared port, unsupervised and out of reach of the next
    SIGTERM. Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op.
    """
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("could not ask to be told of the supervisor's death")
        return
    if os.getppid() != parent.pid:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


class RefuseNewSockets:
    """ASGI wrapper: while the node drains, new Socket.IO connections get 503.

    A new connection is a request to ``/socket.io/`` without a ``sid`` (the
    Engine.IO handshake, by long-polling or by WebSocket). The balancer retries
    it on another node (nginx ``proxy_next_upstream http_503``, HAProxy
    ``retry-on 503`` with ``option redispatch``); a client talking to the node
    directly sees a failed attempt and tries again. Requests of existing
    sessions, and the HTTP API, pass.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.state: Any = None  # the API's state, for tests and tools

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.services.draining
            and scope["type"] in ("http", "websocket")
            and str(scope.get("path", "")).startswith(_SOCKET_PATH)
            and "sid" not in parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        ):
            await _refuse(scope, send)
            return
        await self.app(scope, receive, send)


_REFUSAL = orjson.dumps(
    {"error": {"code": "draining", "message": "this node is shutting down; connect to another"}}
)
_REFUSAL_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_REFUSAL)).encode()),
    (b"retry-after", b"1"),
    (b"connection", b"close"),
]


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 503, "headers": _REFUSAL_HEADERS})
        await send({"type": "http.response.body", "body": _REFUSAL})
    elif "websocket.http.response" in scope.get("extensions", {}):
        # Answer the upgrade request with a plain 503 (ASGI's denial response),
        # which a balancer can retry elsewhere; a bare close would be a 403.
        await send(
            {"type": "websocket.http.response.start", "status": 503, "headers": _REFUSAL_HEADERS}
        )
        await send({"type": "websocket.http.response.body", "body": _REFUSAL})
    else:
        await send({"type": "websocket.close", "code": 1013})
