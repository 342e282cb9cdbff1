"""Python's cyclic garbage collector, tuned for a process that holds thousands of sockets.

With the interpreter's defaults (a young collection every 700 container
allocations) a busy node promotes the objects of every message in flight, and
every few seconds a full collection walks everything the process holds: with
1,000 sockets and groups of 50 sending 100 encrypted messages a second, a
node ran 13 full collections (median 140 ms, up to 290 ms) in its first
minute, the whole node stopped each time (docs/BENCHMARKS.md, fan-out, "The
garbage collector"). Two changes:

- ``gc.freeze()`` once startup is done: modules, models, schemas and settings
  live as long as the process, so full collections stop walking them (about
  half of the objects of an idle node).
- A young generation of 50,000 (``PARLEY_SERVER_GC_THRESHOLD``, as
  ``gc.set_threshold``): by the time it is collected, the objects of the
  messages then in flight are mostly gone, so few are promoted and the older
  generations fill slowly.

Reference counting frees everything outside cycles at once either way; the
collector only finds cycles, and a larger young generation means cyclic
garbage waits a little longer (tens of MB at most). ``parley_gc_pause_seconds``
shows what the collector costs on a running node.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram


class CollectorPauses:
    """Times every collection into ``parley_gc_pause_seconds{generation}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "parley_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector, by generation (2: full)",
            ["generation"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
        )
        self._by_generation = [self.seconds.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


def tune(threshold: tuple[int, ...], freeze: bool) -> None:
    """Apply the thresholds; with ``freeze``, collect once and freeze what is left."""
    if threshold:
        gc.set_threshold(*threshold)
    if freeze:
        gc.collect()
        gc.freeze()
