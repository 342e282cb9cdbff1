"""Where one image's time goes: the pipeline's steps one at a time, timed apart.

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
