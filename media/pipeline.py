"""The image pipeline: sniff, probe, then one pass of pyvips per upload.

Everything here is synchronous and CPU-bound; it runs in the worker pool
(``media.pool``), never on the event loop. libvips releases the GIL while it
works, so a few threads keep the cores busy.

What comes out of an upload (ARCHITECTURE.md section 8):

- ``full``: fitted within 1920x1080, never upscaled, turned upright by its EXIF
  orientation, in sRGB. Animated GIF and WebP stay animated here (WebP only;
  the JPEG fallback is the first frame).
- ``640``, ``320``, ``160``: thumbnails on the long side, first frame only.
- each in WebP and in JPEG (alpha flattened onto white), with no metadata at
  all: no EXIF, no GPS, no XMP, no ICC profile (pixels are converted to sRGB
  first, so colours survive).
- a ThumbHash placeholder (base64, ~25 bytes) for the UI to paint at once.

The original is never kept: it is where the camera wrote the location.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import logging
import mmap
import re
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyvips
import thumbhash

from config.errors import InvalidRequestError, ParleyError, PayloadTooLargeError

# Loaders an upload may reach. Everything else libvips can read (TIFF, SVG,
# PDF, matrix files, ...) is blocked, so a crafted file cannot pick its parser.
_LOADERS = {
    "jpeg": "VipsForeignLoadJpeg",
    "png": "VipsForeignLoadPng",
    "webp": "VipsForeignLoadWebp",
    "gif": "VipsForeignLoadNsgif",
    "heic": "VipsForeignLoadHeif",
    "avif": "VipsForeignLoadHeif",
}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


class UnsupportedImageError(ParleyError):
    status = 415
    code = "unsupported_media_type"


class CorruptImageError(InvalidRequestError):
    code = "corrupt_image"


class ImageTooLargeError(PayloadTooLargeError):
    code = "image_too_large"


class ImageTooComplexError(InvalidRequestError):
    code = "image_too_complex"


# A progressive JPEG is decoded one scan at a time, each a pass over every
# block of the image: 100 scans of 100 megapixels take 1.1-1.5 s here, and
# the standard allows about 700 per colour component in a file of a few
# hundred KB. Encoders write about 10; cjpeg refuses scripts of more than 100.
MAX_JPEG_SCANS = 100
# Where the entropy-coded data of a scan ends: the next marker. Inside the
# data every 0xFF is followed by 0x00 (stuffing) or a restart marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def configure_libvips() -> None:
    """Process-wide libvips settings: only our loaders, no operation cache, no warnings logged.

    The cache would keep decoded uploads alive between requests; nothing is
    ever processed twice, so it only costs memory.
    """
    _limit_malloc_arenas()
    # pyvips hands libvips' log messages to Python logging from whichever
    # thread libvips logs on, its own workers included. A log record made
    # there is a Python allocation in a thread libvips is running, which can
    # start a garbage collection that finalizes pyvips images from inside
    # libvips (a test run aborted exactly so). Warnings (such as "error in
    # tile" before the error we raise anyway) stop at the level check, which
    # allocates nothing.
    logging.getLogger("pyvips").setLevel(logging.ERROR)
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in set(_LOADERS.values()):
        pyvips.operation_block_set(loader, False)


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas (M_ARENA_MAX).

    Each libvips worker thread otherwise gets an arena of its own that keeps
    freed image buffers; bench/media measured a quarter less peak RSS with
    two, at no cost in throughput. A no-op off glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(-8, arenas)  # -8 = M_ARENA_MAX


def sniff(head: bytes) -> str | None:
    """The image format from its first bytes, or None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and len(head) >= 12:
        # ISO base media: the major brand, then compatible brands to the box end.
        size = int.from_bytes(head[:4], "big")
        brands = {head[8:12]} | {
            head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4) if i + 4 <= len(head)
        }
        if brands & _AVIF_BRANDS:
            return "avif"
        if brands & _HEIF_BRANDS:
            return "heic"
    return None


@dataclass(frozen=True, slots=True)
class Probe:
    """What the header says, read without decoding a pixel."""

    format: str
    width: int
    height: int  # of one frame
    frames: int

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames


@dataclass(frozen=True, slots=True)
class Spec:
    """What to make: box of the full variant, thumbnail sizes, encoder settings."""

    max_pixels: int = 100_000_000
    full_width: int = 1920
    full_height: int = 1080
    thumbnails: tuple[int, ...] = (640, 320, 160)
    webp_quality: int = 80
    webp_effort: int = 1
    jpeg_quality: int = 82


@dataclass(frozen=True, slots=True)
class Variant:
    name: str  # "full.webp", "640.jpg", ...
    content_type: str
    width: int
    height: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Processed:
    source: Probe
    width: int  # of the upright full variant
    height: int
    animated: bool
    placeholder: str
    variants: tuple[Variant, ...]


def probe(path: Path, fmt: str, max_pixels: int) -> Probe:
    """Header fields of the file at ``path``; refuses bombs before any decoding."""
    try:
        image = pyvips.Image.new_from_file(str(path), access="sequential")
        frames = image.get("n-pages") if image.get_typeof("n-pages") else 1
        # Multi-frame files report the first frame's size until loaded with n=-1.
        probe = Probe(fmt, image.width, image.height, max(1, int(frames)))
    except pyvips.Error as exc:
        raise CorruptImageError(f"not a readable {fmt} image: {_first_line(exc, path)}") from exc
    if probe.pixels > max_pixels:
        raise ImageTooLargeError(
            f"image is {probe.width}x{probe.height}"
            + (f" x {probe.frames} frames" if probe.frames > 1 else "")
            + f" = {probe.pixels:,} pixels; the limit is {max_pixels:,}"
        )
    if fmt == "jpeg" and jpeg_scans(path, stop_after=MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
        raise ImageTooComplexError(
            f"the JPEG has more than {MAX_JPEG_SCANS} scans (progressive passes; "
            "encoders write about 10): save it again as a baseline JPEG"
        )
    return probe


def jpeg_scans(path: Path, stop_after: int) -> int:
    """How many scans (start-of-scan segments) the JPEG at ``path`` has.

    Walks the marker segments, skipping each one's payload and each scan's
    entropy-coded data, so bytes inside EXIF or an ICC profile never count;
    stray bytes between segments are skipped to the next marker, as libjpeg
    skips them. Stops counting past ``stop_after``.
    """
    with path.open("rb") as file:
        if file.seek(0, 2) < 4:
            return 0
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            scans, position, end = 0, 2, len(data)
            while position + 4 <= end:
                if data[position] != 0xFF:
                    found = _NEXT_MARKER.search(data, position)
                    if found is None:
                        break
                    position = found.start()
                    continue
                marker = data[position + 1]
                if marker == 0xFF:  # fill byte before a marker
                    position += 1
                    continue
                if marker == 0xD9:  # end of image
                    break
                position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
                if marker == 0xDA:
                    scans += 1
                    if scans > stop_after:
                        break
                    found = _NEXT_MARKER.search(data, position)
                    if found is None:
                        break
                    position = found.start()
            return scans


def process(path: Path, fmt: str, spec: Spec, side: Executor | None = None) -> Processed:
    """Every variant of the image at ``path`` (its format already sniffed).

    With a ``side`` executor, the largest encode (the full WebP) runs there
    while this thread makes the rest: the latency of one image is then its
    decode plus the slower half, not the sum.
    """
    source = probe(path, fmt, spec.max_pixels)
    animated = source.frames > 1 and fmt in ("gif", "webp")
    try:
        full = _to_srgb8(_load_fitted(path, fmt, spec, animated=animated)).copy_memory()
        page_height = full.get("page-height") if animated else full.height
        if side is not None:
            full_webp: Future[Variant] = side.submit(_webp, "full", full, spec, animated)
        else:
            full_webp = Future()
            full_webp.set_result(_webp("full", full, spec, animated))
        first = full.crop(0, 0, full.width, page_height).copy_memory() if animated else full
        variants = [_jpeg("full", first, spec)]
        smallest = first
        for size in spec.thumbnails:
            # Each thumbnail from the one before: every step shrinks at most ~3x.
            thumb = smallest.thumbnail_image(size, height=size, size="down").copy_memory()
            variants += [_webp(str(size), thumb, spec, False), _jpeg(str(size), thumb, spec)]
            smallest = thumb
        placeholder = _thumbhash(smallest)
        variants.insert(0, full_webp.result())
    except pyvips.Error as exc:
        raise CorruptImageError(
            f"the {fmt} image cannot be decoded: {_first_line(exc, path)}"
        ) from exc
    return Processed(
        source=source,
        width=full.width,
        height=page_height,
        animated=animated,
        placeholder=placeholder,
        variants=tuple(variants),
    )


def _load_fitted(path: Path, fmt: str, spec: Spec, *, animated: bool) -> Any:
    """The upright image fitted within the full box, in sRGB."""
    if fmt != "jpeg":
        # Converting to sRGB costs 3-6x here even with no profile to convert
        # from, so only images that carry one pay for it.
        header = pyvips.Image.new_from_file(str(path), access="sequential")
        profile = {"export_profile": "srgb"} if header.get_typeof("icc-profile-data") else {}
        return pyvips.Image.thumbnail(
            f"{path}[n=-1]" if animated else str(path),
            spec.full_width,
            height=spec.full_height,
            size="down",
            fail_on="truncated",
            **profile,
        )
    # JPEG: decode straight at the largest 1/2, 1/4 or 1/8 scale that stays
    # at or above the box (the IDCT does the first reduction for free), then
    # finish with one resize. vips_thumbnail keeps a 2x margin here, which
    # costs a third more time for no visible gain at these sizes.
    header = pyvips.Image.new_from_file(str(path), access="sequential")
    width, height = header.width, header.height
    if header.get_typeof("orientation") and header.get("orientation") in (5, 6, 7, 8):
        width, height = height, width
    factor = max(width / spec.full_width, height / spec.full_height)
    shrink = next((s for s in (8, 4, 2) if s <= factor), 1)
    image = pyvips.Image.jpegload(
        str(path), shrink=shrink, access="sequential", fail_on="truncated"
    )
    # Colour conversion after the resize: a fraction of the pixels to convert
    # (bench/media: -42 ms per Display P3 photo), at most a level or two apart.
    image = image.copy_memory().autorot()
    image = image.thumbnail_image(spec.full_width, height=spec.full_height, size="down")
    if image.get_typeof("icc-profile-data"):
        image = image.icc_transform("srgb", embedded=True, intent="perceptual")
    elif image.interpretation == "cmyk":
        image = image.colourspace("srgb")
    return image


def _to_srgb8(image: Any) -> Any:
    """8-bit sRGB (or grey) with at most one alpha band."""
    if image.interpretation in ("rgb16", "grey16") or image.format != "uchar":
        target = "b-w" if image.bands <= 2 else "srgb"
        image = image.colourspace(target).cast("uchar")
    return image


def _webp(prefix: str, image: Any, spec: Spec, animated: bool) -> Variant:
    height = image.get("page-height") if animated else image.height
    data = image.webpsave_buffer(Q=spec.webp_quality, effort=spec.webp_effort, keep="none")
    return Variant(f"{prefix}.webp", "image/webp", image.width, height, data)


def _jpeg(prefix: str, image: Any, spec: Spec) -> Variant:
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    data = image.jpegsave_buffer(Q=spec.jpeg_quality, keep="none", optimize_coding=True)
    return Variant(f"{prefix}.jpg", "image/jpeg", image.width, image.height, data)


def _thumbhash(image: Any) -> str:
    """ThumbHash of the image (scaled to 32 px: the hash holds no more detail)."""
    small = image.thumbnail_image(32, height=32, size="down")
    if small.hasalpha():
        # thumbhash 0.1.2 fails on images with alpha; the placeholder is
        # painted on the page background anyway.
        small = small.flatten(background=[255] * (small.bands - 1))
    if small.bands < 3:
        small = small.colourspace("srgb")
    small = small.bandjoin(255)
    rgba = small.cast("uchar").write_to_memory()
    hashed = thumbhash.rgba_to_thumb_hash(small.width, small.height, list(bytes(rgba)))
    return base64.b64encode(bytes(hashed)).decode()


def _first_line(exc: pyvips.Error, path: Path) -> str:
    """libvips' first line about the failure, without the server's file name."""
    detail = (getattr(exc, "detail", "") or str(exc)).strip().splitlines()
    if not detail:
        return "unknown error"
    return detail[0].replace(f'"{path}"', "the file").replace(str(path), "the file")[:200]
