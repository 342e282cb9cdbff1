"""The load test's report: numbers from the generator processes' replies, JSON and PNG.

The JSON format (``"format": "parley-loadtest/1"``) is stable: fields may be
added, none renamed or removed without a new format number. Times are
milliseconds unless the name says otherwise.
"""

from __future__ import annotations

import array
import math
from pathlib import Path
from typing import Any

FORMAT = "parley-loadtest/1"


def floats(chunks: list[bytes]) -> list[float]:
    values = array.array("f")
    for chunk in chunks:
        values.frombytes(chunk)
    return list(values)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def distribution_ms(seconds: list[float]) -> dict[str, Any]:
    """p50/p95/p99/max/mean in ms of values in seconds (null when there are none)."""
    values = sorted(seconds)
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "count": len(values),
        "p50": round(1000 * percentile(values, 50), 3),
        "p95": round(1000 * percentile(values, 95), 3),
        "p99": round(1000 * percentile(values, 99), 3),
        "max": round(1000 * values[-1], 3),
        "mean": round(1000 * sum(values) / len(values), 3),
    }


def distribution_of_ms(ms: list[float]) -> dict[str, Any]:
    return distribution_ms([m / 1000 for m in ms])


def merge_counts(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items()))


def latency_timeline(
    latency: list[float], received_at: list[float], seconds: int
) -> list[dict[str, Any]]:
    """Per second of the run (by receive time): deliveries and p50/p99/max latency."""
    buckets: list[list[float]] = [[] for _ in range(max(1, seconds))]
    for value, at in zip(latency, received_at, strict=True):
        buckets[min(len(buckets) - 1, max(0, int(at)))].append(value)
    while len(buckets) > 1 and not buckets[-1]:
        buckets.pop()  # the quiet end of the drain
    out = []
    for second, values in enumerate(buckets):
        values.sort()
        out.append(
            {
                "second": second,
                "deliveries": len(values),
                "p50_ms": round(1000 * percentile(values, 50), 2) if values else None,
                "p99_ms": round(1000 * percentile(values, 99), 2) if values else None,
                "max_ms": round(1000 * values[-1], 2) if values else None,
            }
        )
    return out


def write_png(report: dict[str, Any], latency: list[float], path: Path) -> None:
    """Latency over time (per-second p50/p99/max, deliveries/s) and a latency histogram."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "--png needs matplotlib: pip install 'parley[loadtest]' (or matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    timeline = report["timeline"]
    seconds = [t["second"] for t in timeline]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        top.plot(
            seconds,
            [t[key] if t[key] is not None else math.nan for t in timeline],
            label=label,
            marker=".",
        )
    top.set_yscale("log")
    top.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    top.set_xlabel("seconds since the first send")
    top.set_ylabel("send → receive latency (ms)")
    rate = top.twinx()
    rate.bar(seconds, [t["deliveries"] for t in timeline], alpha=0.15, color="grey")
    rate.set_ylabel("deliveries in that second")
    top.legend(loc="upper left")
    cfg = report["config"]
    top.set_title(
        f"parley loadtest: {cfg['sessions']} sessions, groups of {cfg['group_size']}, "
        f"{cfg['rate']:g} msg/s, {cfg['mode']}"
    )
    ms = [1000 * v for v in latency if v > 0]
    if ms:
        low, high = max(min(ms), 0.01), max(ms)
        bins = [low * (high / low) ** (i / 60) for i in range(61)] if high > low else 60
        bottom.hist(ms, bins=bins)
        bottom.set_xscale("log")
        bottom.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        lat = report["latency_ms"]
        for q in ("p50", "p99"):
            if lat[q] is not None:
                bottom.axvline(lat[q], color="red" if q == "p99" else "green", linestyle="--")
                bottom.annotate(f"{q} {lat[q]:.1f} ms", (lat[q], 0), rotation=90, va="bottom")
    bottom.set_xlabel("send → receive latency (ms)")
    bottom.set_ylabel("deliveries")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
