"""Memory of groups of processes from /proc/<pid>/smaps_rollup, sampled every second.

PSS (proportional set size) charges each resident page to the processes that
map it in equal parts: a page of PostgreSQL's shared buffers touched by the
postmaster and four backends counts one fifth to each, so summing PSS over a
group counts it once. RSS counts it in full in every process, so an RSS sum
over a group overstates shared memory (it is reported, but the answer uses PSS).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procstat import TICK, stat

FIELDS = {"Rss": "rss", "Pss": "pss", "Pss_Anon": "pss_anon", "Pss_Shmem": "pss_shmem"}

# A component's processes, found afresh at every sample (backends and workers come and go).
PidSource = Callable[[], Awaitable[list[int]]]


@dataclass
class Usage:
    """Summed over a group of processes, in KiB."""

    rss: int = 0
    pss: int = 0
    pss_anon: int = 0
    pss_shmem: int = 0
    processes: int = 0
    # utime + stime so far, in clock ticks (for the CPU each phase used: how
    # busy the host was while its memory was read).
    cpu_ticks: int = 0

    def add(self, other: Usage) -> None:
        self.rss += other.rss
        self.pss += other.pss
        self.pss_anon += other.pss_anon
        self.pss_shmem += other.pss_shmem
        self.processes += other.processes
        self.cpu_ticks += other.cpu_ticks


def read_usage(pid: int) -> Usage | None:
    """One process's RSS and PSS; None once it is gone (or unreadable)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    usage = Usage(processes=1)
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        attr = FIELDS.get(name)
        if attr is not None:
            setattr(usage, attr, int(rest.split()[0]))
    fields = stat(pid)
    if fields is not None:
        usage.cpu_ticks = int(fields[12]) + int(fields[13])
    return usage


def group_usage(pids: list[int]) -> Usage:
    total = Usage()
    for pid in pids:
        usage = read_usage(pid)
        if usage is not None:
            total.add(usage)
    return total


@dataclass
class Sample:
    at: float
    phase: str
    components: dict[str, Usage]
    # Measured alongside, not part of the stack's total (e.g. the whole shared
    # PostgreSQL server, other people's backends included).
    context: dict[str, Usage] = field(default_factory=dict)
    # CPU seconds the whole machine has been busy (every CPU, /proc/stat).
    machine_busy: float = 0.0

    @property
    def total_pss(self) -> int:
        return sum(u.pss for u in self.components.values())

    @property
    def total_rss(self) -> int:
        return sum(u.rss for u in self.components.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.at, 2),
            "phase": self.phase,
            **{name: vars(u) for name, u in self.components.items()},
            **{f"context:{name}": vars(u) for name, u in self.context.items()},
        }


@dataclass
class Sampler:
    """Samples every component once a second, labelled with the current phase."""

    sources: dict[str, PidSource]
    context: dict[str, PidSource] = field(default_factory=dict)
    interval: float = 1.0
    phase: str = "start"
    samples: list[Sample] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    async def sample(self) -> Sample:
        components = {name: group_usage(await source()) for name, source in self.sources.items()}
        context = {name: group_usage(await source()) for name, source in self.context.items()}
        at = time.monotonic() - self.started
        sample = Sample(at, self.phase, components, context, machine_busy())
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        """Until cancelled: one sample per interval, on a fixed grid (no drift)."""
        tick = time.monotonic()
        while True:
            await self.sample()
            tick += self.interval
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    def of(self, phase: str) -> list[Sample]:
        return [s for s in self.samples if s.phase == phase]


def machine_busy() -> float:
    """CPU seconds all CPUs have been busy (steal included), from /proc/stat."""
    ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK  # minus idle and iowait


def cores(samples: list[Sample], name: str | None) -> float | None:
    """CPU cores a component (None: the whole machine) used over these samples."""
    if len(samples) < 2:
        return None
    first, last = samples[0], samples[-1]
    if name is None:
        used = last.machine_busy - first.machine_busy
    else:
        used = (last.components[name].cpu_ticks - first.components[name].cpu_ticks) / TICK
    return round(max(0.0, used) / (last.at - first.at), 2)


def mib(kib: float) -> float:
    return kib / 1024


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Median and peak PSS (and peak RSS) of each component and of the total, in MiB.

    The total's median and peak are those of the per-sample sums (not sums of
    each component's peak, which need not coincide)."""
    if not samples:
        return {}
    out: dict[str, Any] = {"samples": len(samples)}
    for name in samples[0].components:
        pss = [s.components[name].pss for s in samples]
        out[name] = {
            "pss_median_mib": round(mib(statistics.median(pss)), 1),
            "pss_peak_mib": round(mib(max(pss)), 1),
            "rss_peak_mib": round(mib(max(s.components[name].rss for s in samples)), 1),
            "pss_shmem_peak_mib": round(mib(max(s.components[name].pss_shmem for s in samples)), 1),
            "processes_peak": max(s.components[name].processes for s in samples),
            "cpu_cores": cores(samples, name),
        }
    for name in samples[0].context:
        pss = [s.context[name].pss for s in samples]
        out[f"context:{name}"] = {
            "pss_median_mib": round(mib(statistics.median(pss)), 1),
            "pss_peak_mib": round(mib(max(pss)), 1),
        }
    totals = [s.total_pss for s in samples]
    out["total"] = {
        "pss_median_mib": round(mib(statistics.median(totals)), 1),
        "pss_peak_mib": round(mib(max(totals)), 1),
        "rss_peak_mib": round(mib(max(s.total_rss for s in samples)), 1),
    }
    out["machine_cpu_cores"] = cores(samples, None)
    return out
