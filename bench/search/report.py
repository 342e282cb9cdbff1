"""Markdown tables of a bench/search result file.

.venv/bin/python -m bench.search.report bench/results/search-<timestamp>.json [--plans]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TARGET_SEARCH_P99_MS = 50.0
TARGET_MATCH_MS = 1000.0
KIND_LABELS = {
    "exact_name": "exact name",
    "typo_name": "name with a typo",
    "first_name": "first name alone",
    "nickname_prefix": "nickname prefix",
    "interests": "interests only",
    "interests_name": "interests + name",
}


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _verdict(value: float, target: float) -> str:
    mark = "✓" if value <= target else "✗"
    return f"{value / target:.2f} {mark}"


def search_table(report: dict[str, Any]) -> list[str]:
    http = report["search_http"]
    rows = [
        ("HTTP, one at a time", http["sequential"]["all"], http["sequential"]["per_s"]),
        (
            f"HTTP, {http['concurrent']['in_flight']} in flight",
            http["concurrent"]["all"],
            http["concurrent"]["per_s"],
        ),
        ("search_people alone, one at a time", report["search_backend"]["all"], None),
    ]
    during = report.get("matching", {}).get("search_during_uploads")
    if during:
        rows.append(
            (
                f"HTTP, {http['concurrent']['in_flight']} in flight, while an address book "
                "uploads back to back",
                during["search"],
                None,
            )
        )
    out = [
        "| people search | requests | p50 | p95 | p99 | max | searches/s | p99 / target (50 ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, s, per_s in rows:
        rate = f"{per_s:,.0f}" if per_s else "-"
        out.append(
            f"| {label} | {s['n']:,} | {_ms(s['p50_ms'])} | {_ms(s['p95_ms'])} | "
            f"{_ms(s['p99_ms'])} | {_ms(s['max_ms'])} | {rate} | "
            f"{_verdict(s['p99_ms'], TARGET_SEARCH_P99_MS)} |"
        )
    return out


def kinds_table(report: dict[str, Any]) -> list[str]:
    seq = report["search_http"]["sequential"]["by_kind"]
    conc = report["search_http"]["concurrent"]["by_kind"]
    alone = report["search_backend"]["by_kind"]
    out = [
        "| query kind | HTTP p50 | HTTP p99 | HTTP p99, "
        f"{report['search_http']['concurrent']['in_flight']} in flight | "
        "search_people p50 | search_people p99 | median hits (of 20) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    kinds = [(k, label) for k, label in KIND_LABELS.items()] + [
        (f"{k}+profile", f"{label}, searcher has profile interests")
        for k, label in KIND_LABELS.items()
        if f"{k}+profile" in seq
    ]
    for kind, label in kinds:
        if kind not in seq or kind not in conc:
            continue
        s, c, a = seq[kind], conc[kind], alone.get(kind, {})
        out.append(
            f"| {label} | {_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | {_ms(c['p99_ms'])} | "
            f"{_ms(a.get('p50_ms', 0))} | {_ms(a.get('p99_ms', 0))} | {s['median_hits']} |"
        )
    parts = report.get("route_parts", {})
    if parts:
        out.append("")
        out.append(
            "The route's other queries, alone (p50 / p99): "
            + ", ".join(f"{k} {_ms(v['p50_ms'])} / {_ms(v['p99_ms'])}" for k, v in parts.items())
        )
    return out


def matching_table(report: dict[str, Any]) -> list[str]:
    m = report.get("matching")
    if not m:
        return []
    runs = report["sizes"]["match_runs"]
    book = report["sizes"]["book"]
    rows = [
        (f"HTTP, first upload ({runs} owners, one each)", m["http"]["first_upload"]),
        (
            f"HTTP, one owner re-uploading the same book ({runs} times)",
            m["http"]["replace_same_book"],
        ),
        ("ContactService.replace alone, first upload", m["backend_first_upload"]["steps"]["total"]),
        (
            "ContactService.replace alone, same book again",
            m["backend_replace_same_book"]["steps"]["total"],
        ),
        ("the matching join alone", m["join_alone"]),
    ]
    out = [
        f"| matching {book:,} numbers ({m['http']['matches_per_book']:,} known) against "
        f"{report['sizes']['directory']:,} | runs | median | p99 (= max) | median / target (1 s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, s in rows:
        out.append(
            f"| {label} | {s['n']} | {_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | "
            f"{_verdict(s['p50_ms'], TARGET_MATCH_MS)} |"
        )
    steps = m["backend_first_upload"]["steps"]
    again = m["backend_replace_same_book"]["steps"]
    out += [
        "",
        "| step of ContactService.replace | first upload, median | same book again, median |",
        "| --- | ---: | ---: |",
    ]
    for step in ("normalize", "store_book"):
        out.append(f"| {step} | {_ms(steps[step]['p50_ms'])} | {_ms(again[step]['p50_ms'])} |")
    out.append(f"| total | {_ms(steps['total']['p50_ms'])} | {_ms(again['total']['p50_ms'])} |")
    return out


def markdown(report: dict[str, Any], with_plans: bool = False) -> str:
    lines = [
        f"{report['date']}, {report['command']}, commit {report['git']['commit']}"
        f" ({report['git']['dirty_files']} files changed),"
        f" load at start {report['at_start']['loadavg']}",
        "",
        *search_table(report),
        "",
        *kinds_table(report),
    ]
    if report.get("matching"):
        lines += ["", *matching_table(report)]
    if with_plans:
        for name, plan in report.get("plans", {}).items():
            lines += ["", f"### {name}", "", "```", plan, "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="bench/search tables from a result file")
    parser.add_argument("path", type=Path)
    parser.add_argument("--plans", action="store_true", help="also print the EXPLAIN output")
    args = parser.parse_args()
    print(markdown(json.loads(args.path.read_text()), with_plans=args.plans))


if __name__ == "__main__":
    main()
