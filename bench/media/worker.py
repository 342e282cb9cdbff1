"""One measurement of bench/media, in a fresh process so its peak RSS is its own.

    .venv/bin/python -m bench.media.worker '{"lib": "pyvips", "mode": "threads", ...}'

run.py starts one of these per (library, mode, image) and reads the JSON
line it prints last. Only the library being measured is imported: the
pyvips process never loads Pillow and the Pillow process never loads libvips.

Modes, all with the server's arrangement (media/pool.py: a jobs executor
with 2 workers, and a side executor with 2 more for the full WebP encode):

- ``seq``: one image at a time through that pool; a warm-up, then ``runs``.
- ``threads``: two clients keep an image each in flight through the same
  pool (pyvips: ``MediaPool`` itself) over a batch; a warm-up round, then
  ``batch_runs`` batches of ``batch`` images.
- ``processes``: the same two clients over a ``ProcessPoolExecutor`` of 2
  spawned workers, each with its own side thread; the results come back
  pickled, as they would to a server.
- ``profile``: the step-by-step breakdown of bench/media/profile.py.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORKERS = 2  # MediaSettings.workers' default, and the machine's cores
TICK = os.sysconf("SC_CLK_TCK")

Process = Callable[..., Any]


def load(lib: str, experiment: str = "") -> tuple[Process, Any]:
    """The pipeline function and its default Spec, importing only that library.

    ``experiment``: changes from bench/media/experiments.py to apply.
    """
    from bench.media import experiments

    if lib == "pyvips":
        from media import pipeline

        pipeline.configure_libvips()
        experiments.apply(experiment, lib)
        return experiments.process, pipeline.Spec()
    from bench.media.pillow_pipeline import Spec as PillowSpec
    from bench.media.pillow_pipeline import process as pillow_process

    experiments.apply(experiment, lib)
    if not experiments.with_side():

        def without_side(path: Path, fmt: str, spec: Any, side: Executor | None = None) -> Any:
            return pillow_process(path, fmt, spec, None)

        return without_side, PillowSpec()
    return pillow_process, PillowSpec()


def peak_rss_kb(pid: int | str = "self") -> int:
    """VmHWM: the process's peak RSS so far, in KiB.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that over exec, so
    a process started by fork+exec (as subprocess and multiprocessing's spawn
    do) reports at least the RSS its parent had when it forked. VmHWM belongs
    to the address space, which exec replaces.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


# -- the pools ------------------------------------------------------------------------


class ThreadPool:
    """Runs ``process`` as media.pool.MediaPool does (jobs + side executors of threads).

    For pyvips it is MediaPool itself; for Pillow the same two executors.
    """

    def __init__(self, lib: str, process: Process, spec: Any) -> None:
        self.pids = [os.getpid()]
        self._spec = spec
        if lib == "pyvips":
            from media.pool import MediaPool

            self._media = MediaPool(WORKERS, queue=64)
            self._run: Callable[[Path], Awaitable[Any]] = lambda path: self._media.process(
                path, "jpeg", spec
            )
            self.close = self._media.close
        else:
            jobs = ThreadPoolExecutor(WORKERS, thread_name_prefix="pillow-media")
            side = ThreadPoolExecutor(WORKERS, thread_name_prefix="pillow-media-side")

            async def run(path: Path) -> Any:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(jobs, process, path, "jpeg", spec, side)

            def close() -> None:
                jobs.shutdown()
                side.shutdown()

            self._run = run
            self.close = close

    async def process(self, path: Path) -> Any:
        return await self._run(path)


# State of a process-pool worker, set by its initializer.
_job: dict[str, Any] = {}


def _init_process(lib: str, experiment: str) -> None:
    process, spec = load(lib, experiment)
    _job.update(
        process=process,
        spec=spec,
        side=ThreadPoolExecutor(1, thread_name_prefix="side"),
        baseline_kb=peak_rss_kb(),
    )


def _process_job(path: Path) -> tuple[int, int, Any]:
    processed = _job["process"](path, "jpeg", _job["spec"], _job["side"])
    return os.getpid(), _job["baseline_kb"], processed


class ProcessPool:
    """Two spawned worker processes, each processing one image at a time plus a side thread."""

    def __init__(self, lib: str, experiment: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool: Executor = ProcessPoolExecutor(
            WORKERS, mp_context=context, initializer=_init_process, initargs=(lib, experiment)
        )
        self.worker_baselines_kb: dict[int, int] = {}
        self.pids = [os.getpid()]

    async def process(self, path: Path) -> Any:
        loop = asyncio.get_running_loop()
        pid, baseline, processed = await loop.run_in_executor(self._pool, _process_job, path)
        if pid not in self.worker_baselines_kb:
            self.worker_baselines_kb[pid] = baseline
            self.pids.append(pid)
        return processed

    def close(self) -> None:
        self._pool.shutdown()


# -- measurements ---------------------------------------------------------------------


async def timed(pool: ThreadPool | ProcessPool, path: Path) -> float:
    started = time.perf_counter()
    await pool.process(path)
    return time.perf_counter() - started


async def batch(pool: ThreadPool | ProcessPool, paths: list[Path], clients: int) -> list[float]:
    """Latencies of ``paths``, with ``clients`` images in flight until the list is done."""
    todo: Iterator[Path] = iter(paths)
    latencies: list[float] = []

    async def client() -> None:
        for path in todo:  # shared: whichever client is free takes the next image
            latencies.append(await timed(pool, path))

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def measure(config: dict[str, Any]) -> dict[str, Any]:
    lib, mode, path = config["lib"], config["mode"], Path(config["image"])
    experiment = config.get("experiment", "")
    process, spec = load(lib, experiment)
    pool: ThreadPool | ProcessPool = (
        ProcessPool(lib, experiment) if mode == "processes" else ThreadPool(lib, process, spec)
    )
    baseline_kb = peak_rss_kb()
    clients = 1 if mode == "seq" else WORKERS
    try:
        await batch(pool, [path] * clients, clients)  # warm-up (and process start-up)
        runs: list[dict[str, Any]] = []
        count = config["runs"] if mode == "seq" else config["batch"]
        for _ in range(1 if mode == "seq" else config["batch_runs"]):
            cpu_before = {pid: cpu_seconds(pid) for pid in pool.pids}
            started = time.perf_counter()
            latencies = await batch(pool, [path] * count, clients)
            wall = time.perf_counter() - started
            cpu = sum(cpu_seconds(pid) - before for pid, before in cpu_before.items())
            runs.append(
                {
                    "images": count,
                    "seconds": wall,
                    "images_per_s": count / wall,
                    "cpu_s_per_image": cpu / count,
                    "latencies_s": latencies,
                }
            )
        peak_kb, base_kb = peak_rss_kb(), baseline_kb
        if isinstance(pool, ProcessPool):
            peak_kb += sum(peak_rss_kb(pid) for pid in pool.worker_baselines_kb)
            base_kb += sum(pool.worker_baselines_kb.values())
    finally:
        pool.close()
    latencies = [x for run in runs for x in run["latencies_s"]]
    return {
        "lib": lib,
        "mode": mode,
        "image": path.stem,
        "experiment": experiment,
        "workers": WORKERS,
        "clients": clients,
        "median_latency_ms": 1000 * statistics.median(latencies),
        "min_latency_ms": 1000 * min(latencies),
        "images_per_s": statistics.median(run["images_per_s"] for run in runs),
        "cpu_s_per_image": statistics.median(run["cpu_s_per_image"] for run in runs),
        "peak_rss_kb": peak_kb,
        "baseline_rss_kb": base_kb,
        "processes": len(pool.pids),
        "runs": runs,
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    if config["mode"] == "profile":
        from bench.media.profile import breakdown

        result = breakdown(config["lib"], Path(config["image"]), config["runs"])
    else:
        result = asyncio.run(measure(config))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
