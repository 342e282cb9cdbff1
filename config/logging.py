"""Logging: JSON lines on stderr, each carrying the request id of its request."""

from __future__ import annotations

import contextvars
import logging
import sys
import time

from pythonjsonlogger.json import JsonFormatter

from config.settings import LogSettings

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        # uvicorn's ANSI-coloured duplicate of the message.
        record.__dict__.pop("color_message", None)
        return True


class _ClientNoiseFilter(logging.Filter):
    """Socket.IO logs a traceback for every malformed frame a client sends.

    Anyone can send those, so they are client errors, not ours: keep one line
    without the traceback, and at most ``burst`` of them a minute.
    """

    def __init__(self, burst: int = 10, window: float = 60.0) -> None:
        super().__init__()
        self._burst = burst
        self._window = window
        self._window_start = 0.0
        self._count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._window_start > self._window:
            self._window_start, self._count = now, 0
        self._count += 1
        if self._count > self._burst:
            return False
        if record.exc_info:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


SOCKET_LIBRARY_LOGGERS = ("parley.socketio", "parley.engineio")


def configure_logging(settings: LogSettings) -> None:
    """Send every log record, ours and the libraries', through one formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if settings.format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{request_id}",
                style="{",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib = logging.getLogger(name)
        lib.handlers[:] = []
        lib.propagate = True
    # Access lines duplicate our own request log; keep them out of the stream.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for noisy in ("socketio", "engineio", "tortoise", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for name in SOCKET_LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.setLevel(logging.ERROR)
        library.filters[:] = [_ClientNoiseFilter()]
