"""The results table (Markdown, as docs/BENCHMARKS.md shows it) and the answer to
"does it fit": the peak, and what the sockets cost."""

from __future__ import annotations

from typing import Any

COMPONENTS = ("parley", "postgres", "redis", "nginx")
# Before the first phase (the warm-up requests): in the JSON, not in the table.
SKIPPED = ("start",)


def _cell(summary: dict[str, Any]) -> str:
    return f"{summary['pss_median_mib']:.0f} / {summary['pss_peak_mib']:.0f}"


def _cpu(summary: dict[str, Any]) -> str:
    node, host = summary["parley"].get("cpu_cores"), summary.get("machine_cpu_cores")
    return "-" if node is None or host is None else f"{node:.2f} / {host:.2f}"


def table(result: dict[str, Any]) -> str:
    phases = {k: v for k, v in result["phases"].items() if k not in SKIPPED and v}
    present = [c for c in COMPONENTS if any(c in v for v in phases.values())]
    head = ["phase", *present, "total", "RSS sum, peak", "CPU cores: node / host"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |",
    ]
    for name, summary in phases.items():
        cells = [name, *(_cell(summary[c]) for c in present), _cell(summary["total"]),
                 f"{summary['total']['rss_peak_mib']:.0f}", _cpu(summary)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def answer(result: dict[str, Any], budget_mib: float, os_mib: float) -> dict[str, Any]:
    """The peak of the whole run against the budget; what a socket costs the
    components that hold it (the node, nginx, Redis) between the last two steps;
    what the message load adds; and a linear estimate of the sockets that fit
    (the last step's load peak plus that cost per socket, up to the budget)."""
    phases = result["phases"]
    steps: list[int] = result["steps"]
    peak = max(v["total"]["pss_peak_mib"] for k, v in phases.items() if v and k != "start")
    available = budget_mib - os_mib
    out: dict[str, Any] = {
        "budget_mib": budget_mib,
        "os_mib": os_mib,
        "peak_total_pss_mib": peak,
        "fits": peak <= available,
        "headroom_mib": round(available - peak, 1),
    }

    def median(phase: str, components: tuple[str, ...] = ("total",)) -> float:
        return sum(float(phases[phase][c]["pss_median_mib"]) for c in components)

    last = steps[-1]
    before, count = (
        ("idle", last) if len(steps) == 1 else (f"{steps[-2]} sockets", last - steps[-2])
    )
    # What holds the sockets (PostgreSQL grows with the messages stored in
    # between, up to its buffers, not with the sockets).
    holders = tuple(c for c in ("parley", "nginx", "redis") if c in phases[before])
    grown = median(f"{last} sockets", holders) - median(before, holders)
    per_socket_kib = 1024 * grown / count
    out["kib_per_socket"] = round(per_socket_kib, 1)
    load_phase = f"{last} sockets + {result['rate']:g} msg/s"
    out["load_increment_mib"] = round(median(load_phase) - median(f"{last} sockets"), 1)
    load_peak = phases[load_phase]["total"]["pss_peak_mib"]
    if per_socket_kib > 0:
        out["sockets_estimate"] = int(last + (available - load_peak) * 1024 / per_socket_kib)
    return out


def print_table(key: str, result: dict[str, Any]) -> None:
    print(f"\n{key}: PSS in MiB, median / peak over each phase (1 sample/s)\n")
    print(table(result))
    a = result["answer"]
    print(
        f"\npeak {a['peak_total_pss_mib']:.0f} MiB of {a['budget_mib'] - a['os_mib']:.0f} MiB "
        f"({a['budget_mib']:.0f} minus {a['os_mib']:.0f} for the OS): "
        f"{'fits' if a['fits'] else 'does NOT fit'}, {a['headroom_mib']:.0f} MiB left; "
        f"{a['kib_per_socket']:.1f} KiB per socket (node, nginx, Redis), "
        f"load +{a['load_increment_mib']:.0f} MiB"
    )
    if "sockets_estimate" in a:
        print(f"at that cost, about {a['sockets_estimate']:,} sockets would fit (linear estimate)")
