"""Markdown tables from a bench/media result file.

.venv/bin/python -m bench.media.report bench/results/media-<timestamp>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MODE_NAMES = {"seq": "1 at a time", "threads": "2 threads", "processes": "2 processes"}
LIB_NAMES = {"pyvips": "pyvips", "pillow": "Pillow"}


def _mib(kb: float) -> str:
    return f"{kb / 1024:.0f}"


def _index(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["image"], r["mode"], r["lib"]): r for r in report["results"]}


def images_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| photo | stored as | file | bits/pixel | orientation | ICC profile | GPS |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, d in report["images"].items():
        lines.append(
            f"| {name} | {d['width']}x{d['height']} ({d['megapixels']} MP) | "
            f"{d['bytes'] / 1e6:.2f} MB | {d['bits_per_pixel']:.2f} | {d['orientation']} | "
            f"{'Display P3' if d['icc_profile'] else '-'} | {'yes' if d['gps'] else '-'} |"
        )
    return lines


def main_table(report: dict[str, Any]) -> list[str]:
    index = _index(report)
    lines = [
        "| photo | mode | p50 latency pyvips | Pillow | images/s pyvips | Pillow | "
        "pyvips/Pillow | CPU ms/image pyvips | Pillow | peak RSS MiB pyvips (after imports) "
        "| Pillow | pyvips/Pillow |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in report["images"]:
        for mode in MODE_NAMES:
            v, p = index.get((name, mode, "pyvips")), index.get((name, mode, "pillow"))
            if v is None or p is None:
                continue
            lines.append(
                f"| {name} | {MODE_NAMES[mode]} "
                f"| {v['median_latency_ms']:.0f} ms | {p['median_latency_ms']:.0f} ms "
                f"| {v['images_per_s']:.2f} | {p['images_per_s']:.2f} "
                f"| **{v['images_per_s'] / p['images_per_s']:.2f}x** "
                f"| {1000 * v['cpu_s_per_image']:.0f} | {1000 * p['cpu_s_per_image']:.0f} "
                f"| {_mib(v['peak_rss_kb'])} ({_mib(v['baseline_rss_kb'])}) "
                f"| {_mib(p['peak_rss_kb'])} ({_mib(p['baseline_rss_kb'])}) "
                f"| {v['peak_rss_kb'] / p['peak_rss_kb']:.2f}x |"
            )
    return lines


def pools_table(report: dict[str, Any]) -> list[str]:
    index = _index(report)
    lines = [
        "| photo | library | images/s threads | processes | p50 latency threads | processes "
        "| peak RSS MiB threads | processes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in report["images"]:
        for lib in LIB_NAMES:
            t, p = index.get((name, "threads", lib)), index.get((name, "processes", lib))
            if t is None or p is None:
                continue
            lines.append(
                f"| {name} | {LIB_NAMES[lib]} | {t['images_per_s']:.2f} | {p['images_per_s']:.2f} "
                f"| {t['median_latency_ms']:.0f} ms | {p['median_latency_ms']:.0f} ms "
                f"| {_mib(t['peak_rss_kb'])} | {_mib(p['peak_rss_kb'])} |"
            )
    return lines


def profile_table(report: dict[str, Any]) -> list[str]:
    index = _index(report)
    cells = [
        (name, lib, index[(name, "profile", lib)])
        for name in report["images"]
        for lib in LIB_NAMES
        if (name, "profile", lib) in index
    ]
    if not cells:
        return []
    head = " | ".join(f"{name} {LIB_NAMES[lib]}" for name, lib, _ in cells)
    lines = [f"| ms per image | {head} |", "| --- |" + " ---: |" * len(cells)]
    for step in cells[0][2]["steps_ms"]:
        row = " | ".join(f"{r['steps_ms'][step]:.1f}" for _, _, r in cells)
        lines.append(f"| {step} | {row} |")
    lines.append(
        "| **sum of steps** | "
        + " | ".join(f"**{r['sum_of_steps_ms']:.0f}**" for *_, r in cells)
        + " |"
    )
    lines.append(
        "| whole pipeline, one thread | "
        + " | ".join(f"{r['one_thread_latency_ms']:.0f}" for *_, r in cells)
        + " |"
    )
    return lines


def targets(report: dict[str, Any]) -> list[str]:
    index = _index(report)
    lines = []
    ratio_target = report["targets"]["throughput_ratio"]
    for mode in ("threads", "processes"):
        for name in report["images"]:
            v, p = index.get((name, mode, "pyvips")), index.get((name, mode, "pillow"))
            if v is None or p is None:
                continue
            ratio = v["images_per_s"] / p["images_per_s"]
            memory = v["peak_rss_kb"] / p["peak_rss_kb"]
            met = ratio >= ratio_target and memory <= 1.0
            lines.append(
                f"- {name}, {MODE_NAMES[mode]}: throughput {ratio:.2f}x Pillow's "
                f"(target ≥ {ratio_target:g}x), peak RSS {memory:.2f}x (target ≤ 1x): "
                f"{'met' if met else 'NOT met'}"
            )
    seq = index.get(("8k", "seq", "pyvips"))
    if seq is not None:
        limit = report["targets"]["latency_8k_ms"]
        ms = seq["median_latency_ms"]
        lines.append(
            f"- 8K JPEG, one at a time: {ms:.0f} ms median (best {seq['min_latency_ms']:.0f} ms; "
            f"target ≤ {limit:g} ms): {'met' if ms <= limit else 'NOT met'}"
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    m, start = report["machine"], report["at_start"]
    head = [
        f"{report['date']}, commit {report['git']['commit']}"
        + (" (media/ modified)" if report["git"]["media_changed"] else "")
        + f"; {m['nproc']} x {m['cpu_model']}; load average at start "
        + ", ".join(f"{x:.2f}" for x in start["loadavg"])
        + f", {start['pytest_processes']} pytest processes.",
        f"libvips {m['libvips']} (pyvips {m['pyvips']}, {m['libvips_jpeg']}), "
        f"Pillow {m['pillow']} ({m['pillow_jpeg']}, libwebp {m['pillow_webp']}).",
    ]
    sections = [
        head,
        images_table(report),
        main_table(report),
        pools_table(report),
        profile_table(report),
        targets(report),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
