"""The media pipeline against the same pipeline in Pillow: latency, images/s, peak RSS.

    .venv/bin/python -m bench.media.run                 # everything (a few minutes)
    .venv/bin/python -m bench.media.run --quick         # fewer runs, to try things
    .venv/bin/python -m bench.media.run --images 8k --modes seq --no-profile
    .venv/bin/python -m bench.media.run --wait-quiet 15 # first wait for load < 0.5, no pytest
    .venv/bin/python -m bench.media.run --rounds 3      # all of it 3 times, interleaved

For each generated photo (bench/media/images.py) and each library, in a fresh
process per (library, mode, photo) (bench/media/worker.py):

- ``seq``: one image at a time through the server's pool arrangement; median
  latency of ``--runs`` after a warm-up;
- ``threads``: 2 in flight through the same threads (pyvips: media.pool's
  MediaPool, 2 workers, as the server runs it), ``--batch-runs`` batches of
  ``--batch`` images; median images/s, median per-image latency;
- ``processes``: 2 in flight over a ProcessPoolExecutor of 2 workers;
- peak RSS of each of those processes (VmHWM; for ``processes`` the sum
  of every process's own peak), and its RSS after imports (the baseline);
- ``profile``: each pipeline's steps timed apart (bench/media/profile.py).

Both pipelines' outputs are checked first (same variants and sizes, no
metadata left). Writes bench/results/media-<timestamp>.json and prints the
markdown tables that docs/BENCHMARKS.md shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.media import images  # noqa: E402
from bench.media.report import markdown  # noqa: E402

LIBS = ("pyvips", "pillow")
MODES = ("seq", "threads", "processes")
TARGET_RATIO = 2.0  # pyvips images/s over Pillow's, 2 in flight
TARGET_8K_MS = 250.0  # one 8K JPEG, one at a time


def machine() -> dict[str, Any]:
    import PIL
    import pyvips
    from PIL import features

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "?")
    meminfo = Path("/proc/meminfo").read_text().split()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": int(nproc),
        "cpu_model": model,
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2, 1),
        "python": platform.python_version(),
        "pyvips": pyvips.__version__,
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "libvips_jpeg": "mozjpeg (pyvips-binary)",
        "pillow": PIL.__version__,
        "pillow_jpeg": f"libjpeg-turbo {features.version('libjpeg_turbo')}",
        "pillow_webp": features.version("webp"),
    }


def quiet() -> dict[str, Any]:
    """Load average and test runs on the machine right now."""
    pgrep = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True)
    pytest = [int(p) for p in pgrep.stdout.split() if int(p) != os.getpid()]
    return {"loadavg": list(os.getloadavg()), "pytest_processes": len(pytest)}


class ForeignCpu:
    """CPU time the rest of the machine used while we measured.

    Busy time of all CPUs (/proc/stat) minus ours and our children's (the
    worker processes and their pools, all waited for): what other people's
    tests and benchmarks took from the two cores during the run.
    """

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, float]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        idle, steal = fields[3] + fields[4], fields[7]  # idle + iowait; steal
        busy = (sum(fields[:7]) - idle) / tick
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        return busy, ours, steal / tick, time.monotonic()

    def result(self) -> dict[str, float]:
        busy, ours, steal, now = self._sample()
        foreign = max(0.0, (busy - self._start[0]) - (ours - self._start[1]))
        seconds = now - self._start[3]
        return {
            "seconds": seconds,
            "foreign_cpu_s": foreign,
            "foreign_cores": foreign / seconds,
            # time the hypervisor gave our vCPUs to someone else
            "steal_cores": (steal - self._start[2]) / seconds,
        }


def wait_quiet(minutes: float, max_load: float) -> dict[str, Any]:
    deadline = time.monotonic() + 60 * minutes
    while True:
        state = quiet()
        if state["loadavg"][0] < max_load and not state["pytest_processes"]:
            return state
        if time.monotonic() > deadline:
            print(f"  still busy after {minutes:g} min ({state}); measuring anyway")
            return state
        print(f"  busy ({state}); waiting 60 s", flush=True)
        time.sleep(60)


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "media_changed": bool(git("status", "--porcelain", "media/").strip()),
    }


def check_outputs(paths: dict[str, Path]) -> dict[str, Any]:
    """Both pipelines make the same variants, with no metadata left; their sizes."""
    from PIL import Image

    from bench.media import pillow_pipeline
    from media import pipeline

    assert dataclasses.asdict(pipeline.Spec()) == dataclasses.asdict(pillow_pipeline.Spec())
    pipeline.configure_libvips()
    out: dict[str, Any] = {}
    for name, path in paths.items():
        made: dict[str, Any] = {
            "pyvips": pipeline.process(path, "jpeg", pipeline.Spec()),
            "pillow": pillow_pipeline.process(path, "jpeg", pillow_pipeline.Spec()),
        }
        row: dict[str, Any] = {}
        for lib, processed in made.items():
            for variant in processed.variants:
                with Image.open(io.BytesIO(variant.data)) as image:
                    image.load()
                    assert image.size == (variant.width, variant.height), (lib, variant.name)
                    left = {"exif", "icc_profile", "xmp"} & set(image.info)
                    assert not left, f"{lib} {name} {variant.name} keeps {left}"
                    assert not image.getexif(), f"{lib} {name} {variant.name} keeps EXIF"
            row[lib] = {
                "variants": {v.name: [v.width, v.height, len(v.data)] for v in processed.variants},
                "bytes": sum(len(v.data) for v in processed.variants),
                "placeholder": processed.placeholder,
            }
        a, b = row["pyvips"]["variants"], row["pillow"]["variants"]
        assert a.keys() == b.keys(), (name, a.keys(), b.keys())
        for key in a:
            assert abs(a[key][0] - b[key][0]) <= 1 and abs(a[key][1] - b[key][1]) <= 1, (name, key)
        out[name] = row
    return out


def run_worker(config: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.media.worker", json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"worker {config} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summary(result: dict[str, Any]) -> str:
    if result["mode"] == "profile":
        return (
            f"steps {result['sum_of_steps_ms']:.0f} ms, "
            f"whole {result['one_thread_latency_ms']:.0f} ms"
        )
    return (
        f"p50 {result['median_latency_ms']:.0f} ms, {result['images_per_s']:.2f}/s, "
        f"{result['cpu_s_per_image']:.2f} CPU-s/image, peak {result['peak_rss_kb'] / 1024:.0f} MiB "
        f"(after imports {result['baseline_rss_kb'] / 1024:.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=",".join(p.name for p in images.PHOTOS))
    parser.add_argument(
        "--libs",
        default=",".join(LIBS),
        help="pyvips, pillow, and LIB:EXPERIMENT for a change from bench/media/experiments.py "
        "measured beside them, e.g. pyvips,pyvips:mmap-1m+concurrency-1 "
        "(no-side applies to Pillow too)",
    )
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--runs", type=int, default=9, help="seq: timed images (median)")
    parser.add_argument("--batch", type=int, default=12, help="threads/processes: images")
    parser.add_argument("--batch-runs", type=int, default=3, help="batches (median images/s)")
    parser.add_argument("--profile-runs", type=int, default=5)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat everything this many times, interleaved (medians over rounds)",
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 runs, one batch of 4")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="MINUTES",
        help="first wait (at most this long) for load < --max-load and no pytest",
    )
    parser.add_argument("--max-load", type=float, default=0.5)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.batch, args.batch_runs, args.profile_runs = 3, 4, 1, 3

    names = args.images.split(",")
    paths = images.ensure(names)
    state = wait_quiet(args.wait_quiet, args.max_load) if args.wait_quiet else quiet()
    print(f"machine: load {state['loadavg']}, {state['pytest_processes']} pytest processes")
    report: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.media.run", *sys.argv[1:]]),
        "git": git_state(),
        "machine": machine(),
        "at_start": state,
        "config": {
            "runs": args.runs,
            "batch": args.batch,
            "batch_runs": args.batch_runs,
            "profile_runs": args.profile_runs,
            "rounds": args.rounds,
        },
        "targets": {"throughput_ratio": TARGET_RATIO, "latency_8k_ms": TARGET_8K_MS},
        "images": {name: images.describe(path) for name, path in paths.items()},
    }
    print("checking both pipelines' outputs ...", flush=True)
    report["outputs"] = check_outputs(paths)
    results: list[dict[str, Any]] = []
    foreign = ForeignCpu()
    libs = args.libs.split(",")
    profile = not args.no_profile
    modes = args.modes.split(",") + (["profile"] if profile else [])
    for round_ in range(1, args.rounds + 1):
        for name in names:
            for mode in modes:
                # Alternate which library goes first, so slow drift hits both alike.
                order = libs if len(results) % 2 == 0 else libs[::-1]
                for spec in order:
                    lib, _, experiment = spec.partition(":")
                    if mode == "profile" and experiment:
                        continue  # the profile spells out the unchanged pipeline's steps
                    config = {
                        "lib": lib,
                        "mode": mode,
                        "image": str(paths[name]),
                        "runs": args.profile_runs if mode == "profile" else args.runs,
                        "batch": args.batch,
                        "batch_runs": args.batch_runs,
                        "experiment": experiment,
                    }
                    result = {**run_worker(config), "round": round_}
                    results.append(result)
                    print(f"  {round_} {name:5} {mode:9} {spec:6}  {summary(result)}", flush=True)
    report["results"] = results
    report["at_end"] = quiet()
    report["others_during_run"] = foreign.result()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results" / f"media-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print()
    print(markdown(report))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
