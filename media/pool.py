"""A bounded pool that runs the image pipeline off the event loop.

Threads, not processes: libvips drops the GIL for decoding, resizing and
encoding, so two threads keep two cores busy, and results (a few hundred KB of
encoded variants) need no pickling across a process boundary. bench/media
measures both (docs/BENCHMARKS.md).

At most ``workers`` images are processed at once and at most ``queue`` more
wait; beyond that an upload is turned away at once with 503 and Retry-After
rather than piling up memory and latency.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from config.errors import UnavailableError
from media.pipeline import Processed, Spec, configure_libvips, process

log = logging.getLogger(__name__)


class MediaBusyError(UnavailableError):
    code = "media_busy"


class MediaPool:
    def __init__(self, workers: int, queue: int) -> None:
        configure_libvips()
        self.workers = workers
        self.capacity = workers + queue
        self._jobs = ThreadPoolExecutor(workers, thread_name_prefix="parley-media")
        # One helper thread per worker for the encode that runs beside the job.
        self._side = ThreadPoolExecutor(workers, thread_name_prefix="parley-media-side")
        self._admitted = 0

    @property
    def in_flight(self) -> int:
        """Images being processed or waiting for a worker."""
        return self._admitted

    async def process(self, path: Path, fmt: str, spec: Spec) -> Processed:
        if self._admitted >= self.capacity:
            raise MediaBusyError(
                f"image processing is at capacity ({self.capacity} jobs); retry shortly"
            )
        self._admitted += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._jobs, process, path, fmt, spec, self._side)
        # The slot is freed when the thread is done, even if the caller gave up.
        future.add_done_callback(self._release)
        return await asyncio.shield(future)

    def _release(self, future: asyncio.Future[Processed]) -> None:
        self._admitted -= 1
        if not future.cancelled():
            future.exception()  # consumed: a caller that left must not warn on collection

    def close(self) -> None:
        self._jobs.shutdown(wait=False, cancel_futures=True)
        self._side.shutdown(wait=False, cancel_futures=True)
