"""Markdown tables from a bench/media result file.

    .venv/bin/python -m bench.media.report bench/results/media-<timestamp>.json

With several rounds, every cell is the median over the rounds, images/s shows
the range, and a ratio between two pipelines is the median of the ratios
within each round (the two ran back to back, so they saw the same machine).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

MODE_NAMES = {"seq": "1 at a time", "threads": "2 threads", "processes": "2 processes"}
LIB_NAMES = {"pyvips": "pyvips", "pillow": "Pillow"}
Key = tuple[str, str, str, str]  # photo, mode, library, experiment


def _groups(report: dict[str, Any]) -> dict[Key, list[dict[str, Any]]]:
    """Results by (photo, mode, library, experiment), in round order."""
    out: dict[Key, list[dict[str, Any]]] = {}
    for r in report["results"]:
        key = (r["image"], r["mode"], r["lib"], r.get("experiment", ""))
        out.setdefault(key, []).append(r)
    return out


def _med(results: list[dict[str, Any]], field: str) -> float:
    return float(statistics.median(r[field] for r in results))


def _ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], field: str) -> float:
    """Median over rounds of a[field] / b[field] (same round, back to back)."""
    return float(statistics.median(x[field] / y[field] for x, y in zip(a, b, strict=False)))


def _ips(results: list[dict[str, Any]]) -> str:
    values = [r["images_per_s"] for r in results]
    text = f"{statistics.median(values):.2f}"
    if len(values) > 1:
        text += f" ({min(values):.2f}-{max(values):.2f})"
    return text


def _mib(kb: float) -> str:
    return f"{kb / 1024:.0f}"


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
    groups = _groups(report)
    lines = [
        "| photo | mode | p50 latency pyvips | Pillow | images/s pyvips | Pillow "
        "| pyvips/Pillow | CPU ms/image pyvips | Pillow | peak RSS MiB pyvips (after imports) "
        "| Pillow | pyvips/Pillow |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in report["images"]:
        for mode in MODE_NAMES:
            v, p = groups.get((name, mode, "pyvips", "")), groups.get((name, mode, "pillow", ""))
            if not v or not p:
                continue
            lines.append(
                f"| {name} | {MODE_NAMES[mode]} "
                f"| {_med(v, 'median_latency_ms'):.0f} ms | {_med(p, 'median_latency_ms'):.0f} ms "
                f"| {_ips(v)} | {_ips(p)} "
                f"| **{_ratio(v, p, 'images_per_s'):.2f}x** "
                f"| {1000 * _med(v, 'cpu_s_per_image'):.0f} "
                f"| {1000 * _med(p, 'cpu_s_per_image'):.0f} "
                f"| {_mib(_med(v, 'peak_rss_kb'))} ({_mib(_med(v, 'baseline_rss_kb'))}) "
                f"| {_mib(_med(p, 'peak_rss_kb'))} ({_mib(_med(p, 'baseline_rss_kb'))}) "
                f"| {_ratio(v, p, 'peak_rss_kb'):.2f}x |"
            )
    return lines


def pools_table(report: dict[str, Any]) -> list[str]:
    groups = _groups(report)
    lines = [
        "| photo | library | images/s threads | processes | processes/threads "
        "| p50 latency threads | processes | peak RSS MiB threads | processes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in report["images"]:
        for lib in LIB_NAMES:
            t, p = groups.get((name, "threads", lib, "")), groups.get((name, "processes", lib, ""))
            if not t or not p:
                continue
            lines.append(
                f"| {name} | {LIB_NAMES[lib]} | {_ips(t)} | {_ips(p)} "
                f"| {_ratio(p, t, 'images_per_s'):.2f}x "
                f"| {_med(t, 'median_latency_ms'):.0f} ms | {_med(p, 'median_latency_ms'):.0f} ms "
                f"| {_mib(_med(t, 'peak_rss_kb'))} | {_mib(_med(p, 'peak_rss_kb'))} |"
            )
    return lines


def profile_table(report: dict[str, Any]) -> list[str]:
    groups = _groups(report)
    cells = [
        (name, lib, groups[(name, "profile", lib, "")])
        for name in report["images"]
        for lib in LIB_NAMES
        if (name, "profile", lib, "") in groups
    ]
    if not cells:
        return []
    head = " | ".join(f"{name} {LIB_NAMES[lib]}" for name, lib, _ in cells)
    lines = [f"| ms per image | {head} |", "| --- |" + " ---: |" * len(cells)]
    for step in cells[0][2][0]["steps_ms"]:
        row = " | ".join(
            f"{statistics.median(r['steps_ms'][step] for r in rs):.1f}" for *_, rs in cells
        )
        lines.append(f"| {step} | {row} |")
    sums = " | ".join(f"**{_med(rs, 'sum_of_steps_ms'):.0f}**" for *_, rs in cells)
    lines.append(f"| **sum of steps** | {sums} |")
    wholes = " | ".join(f"{_med(rs, 'one_thread_latency_ms'):.0f}" for *_, rs in cells)
    lines.append(f"| whole pipeline, one thread | {wholes} |")
    return lines


def experiments_table(report: dict[str, Any]) -> list[str]:
    """Each experiment beside the unchanged pipeline of the same run."""
    groups = _groups(report)
    lines = [
        "| photo | mode | library: change | p50 latency | unchanged | images/s | unchanged "
        "| images/s change | CPU ms/image | unchanged | peak RSS MiB | unchanged |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (name, mode, lib, experiment), rs in groups.items():
        base = groups.get((name, mode, lib, ""))
        if not experiment or not base:
            continue
        change = 100 * (_ratio(rs, base, "images_per_s") - 1)
        lines.append(
            f"| {name} | {MODE_NAMES[mode]} | {LIB_NAMES[lib]}: {experiment} "
            f"| {_med(rs, 'median_latency_ms'):.0f} ms | {_med(base, 'median_latency_ms'):.0f} ms "
            f"| {_ips(rs)} | {_ips(base)} | **{change:+.0f} %** "
            f"| {1000 * _med(rs, 'cpu_s_per_image'):.0f} "
            f"| {1000 * _med(base, 'cpu_s_per_image'):.0f} "
            f"| {_mib(_med(rs, 'peak_rss_kb'))} | {_mib(_med(base, 'peak_rss_kb'))} |"
        )
    return lines if len(lines) > 2 else []


def targets(report: dict[str, Any]) -> list[str]:
    groups = _groups(report)
    lines = []
    ratio_target = report["targets"]["throughput_ratio"]
    for mode in ("threads", "processes"):
        for name in report["images"]:
            v, p = groups.get((name, mode, "pyvips", "")), groups.get((name, mode, "pillow", ""))
            if not v or not p:
                continue
            ratio = _ratio(v, p, "images_per_s")
            memory = _ratio(v, p, "peak_rss_kb")
            met = ratio >= ratio_target and memory <= 1.0
            lines.append(
                f"- {name}, {MODE_NAMES[mode]}: throughput {ratio:.2f}x Pillow's "
                f"(target ≥ {ratio_target:g}x), peak RSS {memory:.2f}x (target ≤ 1x): "
                f"{'met' if met else 'NOT met'}"
            )
    seq = groups.get(("8k", "seq", "pyvips", ""))
    if seq:
        limit = report["targets"]["latency_8k_ms"]
        ms = _med(seq, "median_latency_ms")
        best = min(r["min_latency_ms"] for r in seq)
        lines.append(
            f"- 8K JPEG, one at a time: {ms:.0f} ms median (fastest single image {best:.0f} ms; "
            f"target ≤ {limit:g} ms): {'met' if ms <= limit else 'NOT met'}"
        )
    return lines


# The steps that are nothing but a codec call: the same work in any library.
CODEC_STEPS = ("decode", "webp full", "jpeg full", "encode thumbs")


def ceiling(report: dict[str, Any]) -> list[str]:
    """The most any pipeline over these codecs could gain on Pillow's throughput.

    Every library here decodes with libjpeg(-turbo) and encodes with libwebp
    and libjpeg, so the codec steps are a floor under anyone's CPU time per
    image: take the faster of the two libraries at each codec step (from the
    profile) and count everything else as free; Pillow's CPU time per image
    with 2 threads over that floor bounds the ratio from above.
    """
    groups = _groups(report)
    lines = []
    for name in report["images"]:
        steps = {lib: groups.get((name, "profile", lib, "")) for lib in ("pyvips", "pillow")}
        pillow = groups.get((name, "threads", "pillow", ""))
        if not all(steps.values()) or not pillow:
            continue
        floor = sum(
            min(statistics.median(r["steps_ms"][step] for r in rs) for rs in steps.values() if rs)
            for step in CODEC_STEPS
        )
        cpu = 1000 * _med(pillow, "cpu_s_per_image")
        lines.append(
            f"- {name}: codec floor {floor:.0f} ms per image (the faster library at each of "
            f"{', '.join(CODEC_STEPS)}); Pillow needs {cpu:.0f} ms of CPU per image with "
            f"2 threads, so no pipeline on these codecs can exceed {cpu / floor:.2f}x "
            "Pillow's images/s"
        )
    return lines


def header(report: dict[str, Any]) -> list[str]:
    m, start = report["machine"], report["at_start"]
    rounds = report["config"].get("rounds", 1)
    line = (
        f"{report['date']}, commit {report['git']['commit']}"
        + (" (media/ modified)" if report["git"]["media_changed"] else "")
        + f"; {m['nproc']} x {m['cpu_model']}; load average at start "
        + ", ".join(f"{x:.2f}" for x in start["loadavg"])
        + f", {start['pytest_processes']} pytest processes"
    )
    others = report.get("others_during_run")
    if others:
        line += (
            f"; other processes used {others['foreign_cores']:.2f} of the {m['nproc']} cores "
            f"during the {others['seconds']:.0f} s run"
        )
        if "steal_cores" in others:
            line += f", the hypervisor took {others['steal_cores']:.2f} (steal)"
    line += f"; {rounds} round{'s' if rounds > 1 else ''}."
    return [
        line,
        f"libvips {m['libvips']} (pyvips {m['pyvips']}, {m['libvips_jpeg']}), "
        f"Pillow {m['pillow']} ({m['pillow_jpeg']}, libwebp {m['pillow_webp']}).",
    ]


def markdown(report: dict[str, Any]) -> str:
    sections = [
        header(report),
        images_table(report),
        main_table(report),
        pools_table(report),
        profile_table(report),
        experiments_table(report),
        targets(report),
        ceiling(report),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
