"""Candidate changes to media/pipeline.py, measured without editing it.

    .venv/bin/python -m bench.media.run --libs pyvips,pillow,pyvips:mmap-1m --no-profile
    .venv/bin/python -m bench.media.experiments concurrency-1 --image 12mp --reps 25

Each experiment patches the pyvips pipeline inside the measuring process only
(bench/media/worker.py applies it after import), so the same runner measures
the server's code with one change at a time. What each one changes:

- ``concurrency-1``: ``pyvips.concurrency_set(1)`` after ``configure_libvips``:
  libvips' own worker threads per pipeline, 2 by default (the core count).
  The pool already runs 2 jobs and 2 side encodes on 2 cores.
- ``no-side``: no side executor; the full WebP is encoded on the job's thread.
- ``arena-2``: ``mallopt(M_ARENA_MAX, 2)`` at start-up: glibc then keeps at
  most 2 malloc arenas instead of up to 8 per core, so memory freed by one
  thread is reused by the next instead of sitting in that thread's arena.
  (The same as ``MALLOC_ARENA_MAX=2`` in the environment.) The server's
  ``configure_libvips`` does this already, so it changes only Pillow.
- ``mmap-1m``: ``mallopt(M_MMAP_THRESHOLD, 1 MiB)`` at start-up: every
  buffer of 1 MiB or more (decoded images, encoder planes) is its own mapping,
  returned to the kernel when freed. glibc otherwise raises the threshold to
  the largest buffer freed so far, after which image buffers come from the
  heap and stay in the process.
- all of them combine with ``+``: ``mmap-1m+concurrency-1``.

``no-side``, ``arena-2`` and ``mmap-1m`` apply to the Pillow peer too
(``pillow:no-side``).

Run as a module, this is an A/B test in one process, for the changes that
can be switched on and off between two images (``concurrency-1``): the
server's ``process`` (with a side thread) on one photo, unchanged and
changed alternately, ``--reps`` times each; the paired difference of wall
and CPU time per image. Effects of 5-10 % are lost in the noise between
separate processes on this shared machine, not in this.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _concurrency_1() -> None:
    import pyvips

    pyvips.concurrency_set(1)


_with_side = True


def _no_side(lib: str) -> None:
    global _with_side
    _with_side = False
    if lib == "pyvips":  # (the Pillow process must not load libvips)
        from media import pool

        setattr(pool, "process", process)  # noqa: B010  # the name MediaPool calls


def _arena_2(lib: str) -> None:
    m_arena_max = -8  # glibc <malloc.h>
    if ctypes.CDLL(None).mallopt(m_arena_max, 2) != 1:
        raise RuntimeError("mallopt(M_ARENA_MAX) failed")


def _mmap_1m(lib: str) -> None:
    m_mmap_threshold = -3  # glibc <malloc.h>
    if ctypes.CDLL(None).mallopt(m_mmap_threshold, 1 << 20) != 1:
        raise RuntimeError("mallopt(M_MMAP_THRESHOLD) failed")


def process(path: Path, fmt: str, spec: Any, side: Executor | None = None) -> Any:
    """media.pipeline.process, as changed by the experiments applied."""
    from media import pipeline

    return pipeline.process(path, fmt, spec, side if _with_side else None)


def with_side() -> bool:
    """Whether the pipeline still gets a side executor (no ``no-side``)."""
    return _with_side


PYVIPS: dict[str, Callable[[], None]] = {
    "concurrency-1": _concurrency_1,
}
BOTH: dict[str, Callable[[str], None]] = {
    "no-side": _no_side,
    "arena-2": _arena_2,
    "mmap-1m": _mmap_1m,
}


def apply(names: str, lib: str) -> None:
    """Apply ``names`` (``+``-separated) in this process to ``lib``'s pipeline."""
    for name in filter(None, names.split("+")):
        if name in BOTH:
            BOTH[name](lib)
        elif lib == "pyvips":
            PYVIPS[name]()
        else:
            raise SystemExit(f"{name} is a change to the pyvips pipeline only")


def _switch(name: str) -> Callable[[bool], None]:
    """A function that turns the change ``name`` on or off in this process."""
    import pyvips

    if name == "concurrency-1":
        default = pyvips.concurrency_get()
        return lambda on: pyvips.concurrency_set(1 if on else default)
    raise SystemExit(f"{name} cannot be switched within a process; use run.py --libs")


def main() -> None:
    parser = argparse.ArgumentParser(description="A/B of one change, in one process")
    parser.add_argument("change", choices=["concurrency-1"])
    parser.add_argument("--image", default="12mp")
    parser.add_argument("--reps", type=int, default=25)
    args = parser.parse_args()

    from bench.media import images
    from media import pipeline

    path = images.ensure([args.image])[args.image]
    pipeline.configure_libvips()
    switch, spec = _switch(args.change), pipeline.Spec()
    side = ThreadPoolExecutor(1)
    samples: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for rep in range(args.reps + 1):
        for on in (False, True) if rep % 2 else (True, False):
            switch(on)
            wall, cpu = time.perf_counter(), time.process_time()
            pipeline.process(path, "jpeg", spec, side)
            if rep:  # the first of each is a warm-up
                samples[on].append((time.perf_counter() - wall, time.process_time() - cpu))
    for label, i in (("wall", 0), ("CPU", 1)):
        before = [s[i] for s in samples[False]]
        after = [s[i] for s in samples[True]]
        diffs = [b - a for a, b in zip(before, after, strict=True)]
        print(
            f"{args.image} {args.change}: {label} per image "
            f"{1000 * statistics.median(before):.1f} -> {1000 * statistics.median(after):.1f} ms; "
            "paired difference median "
            f"{1000 * statistics.median(diffs):+.1f} ms "
            f"({sum(d < 0 for d in diffs)}/{len(diffs)} pairs faster)"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
