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
    """Coalesce ``submit`` calls into calls of ``run`` with up to ``max_batch`` items."""

    def __init__(self, run: BatchCall[T, R], *, max_batch: int = 256, name: str = "batcher"):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name=self._name)
        return await future

    async def _send(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                outcomes = await self._run([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(
                        f"{self._name}: {len(outcomes)} outcomes for {len(batch)} items"
                    )
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                for _, future in self._pending:
                    future.cancel()
                self._pending.clear()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller was cancelled; the work is done anyway
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
