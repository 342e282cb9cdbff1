"""The media pipeline written with Pillow: the peer that bench/media measures pyvips against.

Same inputs, same steps, same outputs as ``media.pipeline.process`` (JPEG
sources; the benchmark feeds nothing else): the upright image fitted within
1920x1080 without upscaling, in sRGB, no metadata; 640/320/160 thumbnails,
each from the one before; each in WebP (Q80, method 1, libwebp's equivalent
of libvips' effort 1) and JPEG (Q82, optimized Huffman tables, no EXIF); a
ThumbHash of the smallest thumbnail scaled to 32 px, with the same
pure-Python ``thumbhash`` call.

Written the way Pillow's documentation suggests, with what makes Pillow
fast where it has it:

- JPEG draft mode: ``Image.draft`` makes libjpeg decode at 1/2, 1/4 or 1/8
  scale (the DCT does the first shrink), as ``Image.thumbnail`` would do on
  its own if it were called before ``exif_transpose`` loads the pixels. The
  box is swapped for orientations 5-8, so it is the upright size that stays
  at or above 1920x1080 -- the same scale libvips picks.
- ``ImageOps.exif_transpose`` for the orientation, ``Image.thumbnail``
  (bicubic, reducing_gap=2.0: its defaults) for every resize.
- ICC conversion with ImageCms (LittleCMS, perceptual intent, as pyvips) on
  the fitted image, the cheapest place for it.
- the full WebP encode goes to ``side`` when given, as pyvips does: Pillow
  releases the GIL inside libwebp, so it overlaps with the rest.

It does not import ``media.pipeline`` (which loads libvips, ~10 MB of RSS), so
the Pillow process measures Pillow alone: ``Spec``, ``Variant`` and
``Processed`` here mirror that module's, and bench/media/run.py checks that
the two ``Spec`` defaults are equal.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path

import thumbhash
from PIL import Image, ImageCms, ImageOps


@dataclass(frozen=True, slots=True)
class Spec:
    """media.pipeline.Spec's fields and defaults."""

    max_pixels: int = 100_000_000
    full_width: int = 1920
    full_height: int = 1080
    thumbnails: tuple[int, ...] = (640, 320, 160)
    webp_quality: int = 80
    webp_effort: int = 1
    jpeg_quality: int = 82


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    content_type: str
    width: int
    height: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Processed:
    source_size: tuple[int, int]
    width: int
    height: int
    animated: bool
    placeholder: str
    variants: tuple[Variant, ...]


Image.MAX_IMAGE_PIXELS = None  # Spec.max_pixels is the limit, as in the pyvips pipeline
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_ORIENTATION = 0x0112


def process(path: Path, fmt: str, spec: Spec, side: Executor | None = None) -> Processed:
    """Every variant of the JPEG at ``path``, as ``media.pipeline.process`` makes them."""
    with Image.open(path, formats=["JPEG"]) as image:
        source = image.size
        if image.width * image.height > spec.max_pixels:
            raise ValueError(f"{image.width}x{image.height}: over {spec.max_pixels:,} pixels")
        full = _load_fitted(image, spec)
    full_webp: Future[Variant]
    if side is not None:
        full_webp = side.submit(_webp, "full", full, spec)
    else:
        full_webp = Future()
        full_webp.set_result(_webp("full", full, spec))
    variants = [_jpeg("full", full, spec)]
    smallest = full
    for size in spec.thumbnails:
        thumb = smallest.copy()
        thumb.thumbnail((size, size))
        variants += [_webp(str(size), thumb, spec), _jpeg(str(size), thumb, spec)]
        smallest = thumb
    placeholder = _thumbhash(smallest)
    variants.insert(0, full_webp.result())
    return Processed(
        source_size=source,
        width=full.width,
        height=full.height,
        animated=False,
        placeholder=placeholder,
        variants=tuple(variants),
    )


def _load_fitted(image: Image.Image, spec: Spec) -> Image.Image:
    """Decoded at the DCT scale for the box, upright, fitted, sRGB, without metadata."""
    box = (spec.full_width, spec.full_height)
    if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
        box = (box[1], box[0])  # the stored image is the upright one turned a quarter
    ratio = min(1.0, box[0] / image.width, box[1] / image.height)
    # draft() keeps both sides at or above the requested size.
    image.draft("RGB", (max(1, round(image.width * ratio)), max(1, round(image.height * ratio))))
    icc = image.info.get("icc_profile")
    upright = ImageOps.exif_transpose(image)
    upright.thumbnail((spec.full_width, spec.full_height))
    if icc:
        mode = "RGBA" if upright.mode in ("RGBA", "LA", "PA") else "RGB"
        converted = ImageCms.profileToProfile(
            upright,
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            _SRGB,
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode=mode,
        )
        assert converted is not None
        upright = converted
    elif upright.mode not in ("RGB", "RGBA", "L", "LA"):
        upright = upright.convert("RGBA" if "A" in upright.mode else "RGB")
    upright.info.clear()  # no EXIF, XMP or ICC profile may reach an output
    return upright


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _webp(prefix: str, image: Image.Image, spec: Spec) -> Variant:
    data = _encode(image, "WEBP", quality=spec.webp_quality, method=spec.webp_effort)
    return Variant(f"{prefix}.webp", "image/webp", image.width, image.height, data)


def _jpeg(prefix: str, image: Image.Image, spec: Spec) -> Variant:
    if image.mode in ("RGBA", "LA"):
        flat = Image.new(image.mode[:-1], image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    data = _encode(image, "JPEG", quality=spec.jpeg_quality, optimize=True)
    return Variant(f"{prefix}.jpg", "image/jpeg", image.width, image.height, data)


def _thumbhash(image: Image.Image) -> str:
    """ThumbHash of the image scaled to 32 px, as the pyvips pipeline computes it."""
    small = image.copy()
    small.thumbnail((32, 32))
    rgba = small.convert("RGBA")
    hashed = thumbhash.rgba_to_thumb_hash(rgba.width, rgba.height, list(rgba.tobytes()))
    return base64.b64encode(bytes(hashed)).decode()
