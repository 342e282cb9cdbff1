"""Phone numbers of an address book: E.164, then a keyed hash (seed 002).

Parsing and validating with phonenumbers costs about 90 µs a number in pure
Python, which holds the GIL: a 5,000-number book is half a second during
which a thread would stall every request of its process. Books of
``POOL_FROM`` numbers or more are therefore split over worker processes (on
other cores, off the interpreter that serves requests); smaller ones take a
thread. Both give exactly what ``normalize`` gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

import phonenumbers

_MAX_RAW = 64
# Below this many numbers a thread is cheaper than the trip to another process.
POOL_FROM = 500
MAX_PROCESSES = 2


def phone_hash(secret: bytes, e164: str) -> str:
    return hmac.new(secret, b"parley-phone-v1:" + e164.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Normalized:
    hashes: dict[str, list[int]]  # hash -> indexes of the submitted entries that gave it
    invalid: list[int]


def normalize(
    secret: bytes, numbers: Sequence[str], region: str | None, first: int = 0
) -> Normalized:
    """Keyed hashes of the valid numbers; indexes (from ``first``) of the ones that are not."""
    hashes: dict[str, list[int]] = {}
    invalid: list[int] = []
    hint = region.upper() if region else None
    for index, raw in enumerate(numbers, start=first):
        try:
            if len(raw) > _MAX_RAW:
                raise phonenumbers.NumberParseException(0, "too long")
            number = phonenumbers.parse(raw, hint)
            if not phonenumbers.is_valid_number(number):
                raise phonenumbers.NumberParseException(0, "not valid")
        except phonenumbers.NumberParseException:
            invalid.append(index)
            continue
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        hashes.setdefault(phone_hash(secret, e164), []).append(index)
    return Normalized(hashes, invalid)


def merge(parts: Sequence[Normalized]) -> Normalized:
    """Normalized pieces of consecutive slices of a book, as one ``normalize`` of it."""
    hashes: dict[str, list[int]] = {}
    invalid: list[int] = []
    for part in parts:
        for digest, indexes in part.hashes.items():
            hashes.setdefault(digest, []).extend(indexes)
        invalid.extend(part.invalid)
    return Normalized(hashes, invalid)


def _watch_owner(alive: Connection) -> None:
    """In a worker: exit as soon as the process that owns the pool is gone.

    A node stopped by a signal never runs the pool's shutdown, and workers
    waiting for work would outlive it (holding its stderr). The owner keeps
    the other end of ``alive`` open for as long as it lives.
    """

    def wait() -> None:
        with contextlib.suppress(EOFError, OSError):
            alive.recv_bytes()
        os._exit(0)

    threading.Thread(target=wait, name="owner-watch", daemon=True).start()


def _warm() -> None:
    """Load phonenumbers' metadata in a new worker before a real book needs it."""
    normalize(b"", ["+44 7700 900123", "+1 212 555 0123"], "GB")


class NumberNormalizer:
    """``normalize`` off the event loop: a thread for small books, processes for big ones.

    The first big book starts the worker processes and is parsed in a thread
    while they start (a second or so); later ones go to the workers. The
    workers come from a fork server (never forked from this threaded
    process) and exit with ``close`` or with this process, however it ends.
    """

    def __init__(self, secret: bytes, processes: int | None = None) -> None:
        self._secret = secret
        self._processes = processes or max(1, min(MAX_PROCESSES, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None
        # The two ends of the pipe the workers watch (see _watch_owner).
        self._pipe: tuple[Connection, Connection] | None = None
        self._ready: list[Future[None]] = []
        self._lock = threading.Lock()

    def __call__(self, numbers: Sequence[str], region: str | None) -> Normalized:
        """In this thread (tests, small books)."""
        return normalize(self._secret, numbers, region)

    @property
    def ready(self) -> bool:
        """The worker processes are up and have loaded phonenumbers."""
        return bool(self._ready) and all(f.done() for f in self._ready)

    async def run(self, numbers: Sequence[str], region: str | None) -> Normalized:
        if len(numbers) < POOL_FROM or self._processes < 2:
            return await asyncio.to_thread(normalize, self._secret, numbers, region)
        pool = self._start()
        if not self.ready:
            return await asyncio.to_thread(normalize, self._secret, numbers, region)
        loop = asyncio.get_running_loop()
        size = -(-len(numbers) // self._processes)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool, normalize, self._secret, list(numbers[i : i + size]), region, i
                )
                for i in range(0, len(numbers), size)
            )
        )
        return merge(parts)

    async def warm(self) -> None:
        """Start the workers and wait until they can take a book (tests, benchmarks)."""
        self._start()
        await asyncio.gather(*(asyncio.wrap_future(f) for f in self._ready))

    def _start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                self._pipe = context.Pipe(duplex=False)
                self._pool = ProcessPoolExecutor(
                    self._processes,
                    mp_context=context,
                    initializer=_watch_owner,
                    initargs=(self._pipe[0],),
                )
                self._ready = [self._pool.submit(_warm) for _ in range(self._processes)]
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
                self._ready = []
            if self._pipe is not None:
                for end in self._pipe:
                    end.close()
                self._pipe = None
