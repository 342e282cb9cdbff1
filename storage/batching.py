"""Group commit: concurrent calls that arrive together share one round trip.

A hot path that makes one database or Redis call per event pays the client
library's per-call cost (building the command, taking a pooled connection,
parsing the reply) once per event, and the server's per-statement cost with
it. A ``Batcher`` queues the calls instead: one task sends whatever has queued
as a single call, and everything that arrives while that call is out goes in
the next one. Under light load a batch holds one item and costs one task hop;
under heavy load batches grow by themselves, which is when it matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# The batched call: one outcome per item, in order. An exception instance as an
# outcome fails that item alone; raising fails the whole batch.
BatchCall = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    """Coalesce ``submit`` calls into calls of ``run`` with up to ``max_batch`` items.

    At most ``max_in_flight`` calls are out at once; more than one keeps a
    single slow or hung call (a lock wait, a half-open connection) from
    holding up every later caller.
    """

    def __init__(
        self,
        run: BatchCall[T, R],
        *,
        max_batch: int = 256,
        max_in_flight: int = 1,
        name: str = "batcher",
    ):
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._senders: set[asyncio.Task[None]] = set()
        self._starting: asyncio.Task[None] | None = None  # created, not yet running

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        # A sender takes what has queued when it starts running, so the calls of
        # one tick share a batch; start another only while none is about to.
        if self._pending and not self._starting and len(self._senders) < self._max_in_flight:
            sender = asyncio.create_task(self._sender(), name=self._name)
            self._starting = sender
            self._senders.add(sender)
            sender.add_done_callback(self._sent)

    def _sent(self, sender: asyncio.Task[None]) -> None:
        self._senders.discard(sender)
        if self._starting is sender:  # cancelled before it ran
            self._starting = None
        self._dispatch()

    async def _sender(self) -> None:
        self._starting = None
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            await self._send(batch)
            # What queued while that call was out goes in the next one.

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._run([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{self._name}: {len(outcomes)} outcomes for {len(batch)} items")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the caller was cancelled; the work is done anyway
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
