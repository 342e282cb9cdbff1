"""Graceful drain on SIGTERM (ARCHITECTURE.md section 10).

The first SIGTERM marks the node as draining (``/readyz`` answers 503), then
disconnects its sockets (clients reconnect, through the balancer, to another
node; pending long-polls end), and only then hands over to uvicorn's own
shutdown, which stops accepting and lets in-flight requests finish within
``PARLEY_SERVER_DRAIN_GRACE_SECONDS``. A second SIGTERM skips the drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from server.container import Services

log = logging.getLogger(__name__)


@contextmanager
def drain_on_sigterm(services: Services) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread
        return
    loop = asyncio.get_running_loop()
    previous: Any = signal.getsignal(signal.SIGTERM)
    tasks: set[asyncio.Task[None]] = set()

    def hand_over() -> None:
        if callable(previous):
            previous(signal.SIGTERM, None)

    async def drain() -> None:
        log.info("SIGTERM: draining", extra={"sockets": services.hub.local_socket_count})
        try:
            await services.hub.disconnect_all()
        finally:
            hand_over()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if services.draining:
            loop.call_soon_threadsafe(hand_over)
            return
        services.draining = True

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
