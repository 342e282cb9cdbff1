"""Where one image's time goes: the pipeline's steps one at a time, timed apart.

    .venv/bin/python -m bench.media.profile [8k 4k]   # the codecs on the same pixels

Each step is made to finish before the next starts (``copy_memory`` for
pyvips, whose operations are otherwise lazy and run fused; ``load`` for
Pillow), on one thread with no side executor. The encoders and the
ThumbHash are the pipelines' own functions; only the decode-and-fit part is
spelled out here to put a clock between its steps. The total is therefore a
little above the pipeline's one-thread latency (nothing overlaps, and libvips
cannot fuse decode with the ICC transform), which run.py reports beside it.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPS = (
    "open",  # header and EXIF, the shrink-on-load factor
    "decode",  # JPEG decode at 1/2, 1/4 or 1/8 scale (DCT)
    "icc",  # embedded profile to sRGB
    "rotate",  # EXIF orientation
    "resize full",  # to fit 1920x1080
    "webp full",
    "jpeg full",
    "resize thumbs",  # 640, 320, 160, each from the one before
    "encode thumbs",  # WebP and JPEG of each
    "thumbhash",  # scale to 32 px, then the pure-Python hash
)


class _Clock:
    def __init__(self) -> None:
        self.steps: dict[str, float] = defaultdict(float)
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] += now - self._last
        self._last = now


def _pyvips_once(path: Path) -> dict[str, float]:
    import pyvips

    from media import pipeline

    spec, clock = pipeline.Spec(), _Clock()
    pipeline.probe(path, "jpeg", spec.max_pixels)
    header = pyvips.Image.new_from_file(str(path), access="sequential")
    width, height = header.width, header.height
    if header.get_typeof("orientation") and header.get("orientation") in (5, 6, 7, 8):
        width, height = height, width
    factor = max(width / spec.full_width, height / spec.full_height)
    shrink = next((s for s in (8, 4, 2) if s <= factor), 1)
    clock.lap("open")
    image = pyvips.Image.jpegload(
        str(path), shrink=shrink, access="sequential", fail_on="truncated"
    ).copy_memory()
    clock.lap("decode")
    if image.get_typeof("icc-profile-data"):
        image = image.icc_transform("srgb", embedded=True, intent="perceptual").copy_memory()
    clock.lap("icc")
    image = image.autorot().copy_memory()
    clock.lap("rotate")
    full = image.thumbnail_image(spec.full_width, height=spec.full_height, size="down")
    full = pipeline._to_srgb8(full).copy_memory()
    clock.lap("resize full")
    pipeline._webp("full", full, spec, False)
    clock.lap("webp full")
    pipeline._jpeg("full", full, spec)
    clock.lap("jpeg full")
    smallest = full
    for size in spec.thumbnails:
        thumb = smallest.thumbnail_image(size, height=size, size="down").copy_memory()
        clock.lap("resize thumbs")
        pipeline._webp(str(size), thumb, spec, False)
        pipeline._jpeg(str(size), thumb, spec)
        clock.lap("encode thumbs")
        smallest = thumb
    pipeline._thumbhash(smallest)
    clock.lap("thumbhash")
    return clock.steps


def _pillow_once(path: Path) -> dict[str, float]:
    import io

    from PIL import Image, ImageCms, ImageOps

    from bench.media import pillow_pipeline as pp

    spec, clock = pp.Spec(), _Clock()
    with Image.open(path, formats=["JPEG"]) as image:
        box = (spec.full_width, spec.full_height)
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            box = (box[1], box[0])
        ratio = min(1.0, box[0] / image.width, box[1] / image.height)
        image.draft("RGB", (round(image.width * ratio), round(image.height * ratio)))
        icc = image.info.get("icc_profile")
        clock.lap("open")
        image.load()
        clock.lap("decode")
        upright = ImageOps.exif_transpose(image)
    clock.lap("rotate")
    upright.thumbnail((spec.full_width, spec.full_height))
    clock.lap("resize full")
    if icc:
        converted = ImageCms.profileToProfile(
            upright,
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            pp._SRGB,
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode="RGB",
        )
        assert converted is not None
        upright = converted
    upright.info.clear()
    clock.lap("icc")
    pp._webp("full", upright, spec)
    clock.lap("webp full")
    pp._jpeg("full", upright, spec)
    clock.lap("jpeg full")
    smallest = upright
    for size in spec.thumbnails:
        thumb = smallest.copy()
        thumb.thumbnail((size, size))
        clock.lap("resize thumbs")
        pp._webp(str(size), thumb, spec)
        pp._jpeg(str(size), thumb, spec)
        clock.lap("encode thumbs")
        smallest = thumb
    pp._thumbhash(smallest)
    clock.lap("thumbhash")
    return clock.steps


def breakdown(lib: str, path: Path, runs: int) -> dict[str, Any]:
    """Median milliseconds per step over ``runs`` (after a warm-up), and the one-thread latency."""
    once = _pyvips_once if lib == "pyvips" else _pillow_once
    whole: Callable[[], object]
    if lib == "pyvips":
        from media.pipeline import Spec, configure_libvips, process

        configure_libvips()
        whole = lambda: process(path, "jpeg", Spec())  # noqa: E731
    else:
        from bench.media.pillow_pipeline import Spec as PillowSpec
        from bench.media.pillow_pipeline import process as pillow_process

        whole = lambda: pillow_process(path, "jpeg", PillowSpec())  # noqa: E731
    once(path)
    samples = [once(path) for _ in range(runs)]
    wholes = []
    for _ in range(runs):
        started = time.perf_counter()
        whole()
        wholes.append(time.perf_counter() - started)
    steps = {step: 1000 * statistics.median(s.get(step, 0.0) for s in samples) for step in STEPS}
    return {
        "lib": lib,
        "mode": "profile",
        "image": path.stem,
        "steps_ms": steps,
        "sum_of_steps_ms": sum(steps.values()),
        "one_thread_latency_ms": 1000 * statistics.median(wholes),
    }


def codecs(path: Path, reps: int = 15) -> dict[str, Any]:
    """The same pixels through both libraries' encoders, and the cost of a tiny operation.

    Takes the fitted image the pyvips pipeline makes from ``path``, hands the
    very same pixels to Pillow, and times each encoder on them (median
    milliseconds; whether the outputs are the same bytes). Then a 160x90
    image: JPEG and WebP encode and a 32 px thumbnail in each, where nearly
    all the time is per-operation overhead.
    """
    import io

    import pyvips
    from PIL import Image

    from media import pipeline

    pipeline.configure_libvips()
    spec = pipeline.Spec()
    full = pipeline._to_srgb8(pipeline._load_fitted(path, "jpeg", spec, animated=False))
    full = full.copy_memory()
    same = Image.frombytes("RGB", (full.width, full.height), full.write_to_memory())
    tiny_v = (pyvips.Image.black(160, 90, bands=3) + 100).cast("uchar").copy_memory()
    tiny_p = Image.new("RGB", (160, 90), (100, 100, 100))

    def pillow(image: Image.Image, fmt: str, **options: Any) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    def thumb(image: Image.Image) -> bytes:
        small = image.copy()
        small.thumbnail((32, 32))
        return small.tobytes()

    cases: dict[str, Callable[[], bytes]] = {
        "webp full pyvips": lambda: full.webpsave_buffer(Q=80, effort=1, keep="none"),
        "webp full Pillow": lambda: pillow(same, "WEBP", quality=80, method=1),
        "jpeg full pyvips": lambda: full.jpegsave_buffer(Q=82, keep="none", optimize_coding=True),
        "jpeg full Pillow": lambda: pillow(same, "JPEG", quality=82, optimize=True),
        "160x90 webp pyvips": lambda: tiny_v.webpsave_buffer(Q=80, effort=1, keep="none"),
        "160x90 webp Pillow": lambda: pillow(tiny_p, "WEBP", quality=80, method=1),
        "160x90 jpeg pyvips": lambda: tiny_v.jpegsave_buffer(Q=82, keep="none"),
        "160x90 jpeg Pillow": lambda: pillow(tiny_p, "JPEG", quality=82),
        "160x90 to 32 px pyvips": lambda: tiny_v.thumbnail_image(32, height=32).write_to_memory(),
        "160x90 to 32 px Pillow": lambda: thumb(tiny_p),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    out: dict[str, bytes] = {}
    for _ in range(reps):
        for name, case in cases.items():
            started = time.perf_counter()
            out[name] = case()
            times[name].append(time.perf_counter() - started)
    return {
        "image": path.stem,
        "full_size": [full.width, full.height],
        "ms": {name: 1000 * statistics.median(t) for name, t in times.items()},
        "bytes": {name: len(data) for name, data in out.items()},
        "webp_identical": out["webp full pyvips"] == out["webp full Pillow"],
    }


if __name__ == "__main__":
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.media import images

    for name, file in images.ensure(sys.argv[1:] or ["8k", "4k"]).items():
        result = codecs(file)
        print(f"{name} ({result['full_size'][0]}x{result['full_size'][1]}):")
        for case, ms in result["ms"].items():
            print(f"  {case:24} {ms:7.2f} ms  {result['bytes'][case]:>8,} bytes")
        print(f"  same WebP bytes: {result['webp_identical']}")
        print(json.dumps(result), file=sys.stderr)
