"""The codecs alone: one photo's decode, and the encodes of the decoded image.

    .venv/bin/python -m bench.media.codecs                 # 8k, 3 rounds
    .venv/bin/python -m bench.media.codecs --image 4k --rounds 5
    .venv/bin/python -m bench.media.codecs --vips-python /tmp/sysvips/bin/python

What the pipelines cannot avoid, measured without them: the JPEG decode at
the pipeline's shrink-on-load scale and at full size, and the pipeline's
encodes (WebP Q80 effort 1, JPEG Q82 with and without optimized Huffman
tables) of the image decoded at that scale (1920x1080 for the 8K and 4K
photos, 2016x1512 for the 12 MP one), each the median CPU time of ``--reps``
calls after a warm-up. Each library runs in its own process, alternately,
``--rounds`` times. ``--vips-python`` runs the pyvips side with another
interpreter: a virtualenv with plain ``pyvips`` (no ``pyvips-binary``) uses
the system's libvips, to compare a libvips build against pyvips-binary's
(bench/media/README.md, "Codec floor").
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPS = ("decode at scale", "decode full", "webp", "jpeg optimized", "jpeg")


def _cpu_ms(call: Callable[[], object], reps: int) -> float:
    call()
    times = []
    for _ in range(reps):
        start = time.process_time()
        call()
        times.append(1000 * (time.process_time() - start))
    return statistics.median(times)


def _scale(width: int, height: int, orientation: int) -> int:
    """The pipeline's shrink-on-load factor for its box of 1920x1080."""
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    factor = max(width / 1920, height / 1080)
    return next((s for s in (8, 4, 2) if s <= factor), 1)


def _pyvips(path: Path, reps: int) -> dict[str, Any]:
    import pyvips

    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)  # the codecs' own time, not libvips' threads
    keep = {"keep": "none"} if pyvips.at_least_libvips(8, 15) else {"strip": True}
    header = pyvips.Image.new_from_file(str(path))
    orientation = header.get("orientation") if header.get_typeof("orientation") else 1
    shrink = _scale(header.width, header.height, orientation)

    def decode(scale: int) -> Any:
        return pyvips.Image.jpegload(str(path), shrink=scale, access="sequential").copy_memory()

    image = decode(shrink)
    return {
        "library": f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
        + (" (pyvips-binary)" if pyvips.API_mode else " (system)"),
        "scale": shrink,
        "ms": {
            "decode at scale": _cpu_ms(lambda: decode(shrink), reps),
            "decode full": _cpu_ms(lambda: decode(1), max(3, reps // 3)),
            "webp": _cpu_ms(lambda: image.webpsave_buffer(Q=80, effort=1, **keep), reps),
            "jpeg optimized": _cpu_ms(
                lambda: image.jpegsave_buffer(Q=82, optimize_coding=True, **keep), reps
            ),
            "jpeg": _cpu_ms(lambda: image.jpegsave_buffer(Q=82, **keep), reps),
        },
    }


def _pillow(path: Path, reps: int) -> dict[str, Any]:
    import PIL
    from PIL import Image, features

    with Image.open(path) as header:
        shrink = _scale(*header.size, header.getexif().get(0x0112, 1))

    def decode(scale: int) -> Image.Image:
        image = Image.open(path)
        if scale > 1:
            image.draft("RGB", (image.width // scale, image.height // scale))
        image.load()
        return image

    image = decode(shrink)

    def encode(fmt: str, **options: Any) -> None:
        image.save(io.BytesIO(), fmt, **options)

    return {
        "library": f"Pillow {PIL.__version__} (libjpeg-turbo "
        f"{features.version('libjpeg_turbo')}, libwebp {features.version('webp')})",
        "scale": shrink,
        "ms": {
            "decode at scale": _cpu_ms(lambda: decode(shrink), reps),
            "decode full": _cpu_ms(lambda: decode(1), max(3, reps // 3)),
            "webp": _cpu_ms(lambda: encode("WEBP", quality=80, method=1), reps),
            "jpeg optimized": _cpu_ms(lambda: encode("JPEG", quality=82, optimize=True), reps),
            "jpeg": _cpu_ms(lambda: encode("JPEG", quality=82), reps),
        },
    }


def _measure(python: str, lib: str, path: Path, reps: int) -> dict[str, Any]:
    command = [python, "-m", "bench.media.codecs", "--one", lib, "--path", str(path)]
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [*command, "--reps", str(reps)], cwd=root, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description="Decode and encode times of both libraries")
    parser.add_argument("--image", default="8k")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--vips-python", default=sys.executable)
    parser.add_argument("--one", choices=["pyvips", "pillow"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run = _pyvips if args.one == "pyvips" else _pillow
        print(json.dumps(run(args.path, args.reps)))
        return

    from bench.media import images

    path = images.ensure([args.image])[args.image]
    results: dict[str, list[dict[str, Any]]] = {"pyvips": [], "pillow": []}
    for _ in range(args.rounds):
        results["pyvips"].append(_measure(args.vips_python, "pyvips", path, args.reps))
        results["pillow"].append(_measure(sys.executable, "pillow", path, args.reps))
    scale = results["pillow"][0]["scale"]
    names = [rs[0]["library"] for rs in results.values()]
    print(f"{args.image}: CPU ms, median of {args.reps} calls; range over {args.rounds} rounds")
    print(f"| step | {' | '.join(names)} | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for step in STEPS:
        cells = [[r["ms"][step] for r in rs] for rs in results.values()]
        label = f"decode at 1/{scale}" if step == "decode at scale" else step
        ratio = statistics.median(cells[0]) / statistics.median(cells[1])
        shown = " | ".join(f"{min(c):.1f}-{max(c):.1f}" for c in cells)
        print(f"| {label} | {shown} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
