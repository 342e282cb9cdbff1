"""Photo-like JPEGs for bench/media, generated once with pyvips and cached.

Pure noise would make every decoder and encoder look slow (nothing to
compress) and flat colour would make them look fast. Camera JPEGs at Q90 are
about 1.5-2.5 bits per pixel; these get there with what photos have: smooth
structure at every scale (Gaussian noise upscaled from ~8 px to ~1/8 of the
frame, amplitude growing with scale, as in 1/f natural images), soft-edged
shapes (a thresholded mid-scale field, blurred 1.2 px), colour that varies
more slowly than brightness, and mild per-channel sensor noise.

Metadata as a camera writes it: EXIF with make, model, date, orientation
(6 on the phone-sized ones: the pipeline must rotate them) and GPS position,
and a Display P3 ICC profile on the phone photo (the pipeline must convert
it to sRGB). Files are keyed by ``VERSION`` under bench/results/, so a change
here regenerates them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips
from PIL import Image

VERSION = "2"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "bench" / "results" / f"media-images-v{VERSION}"
JPEG_QUALITY = 90


@dataclass(frozen=True, slots=True)
class Photo:
    name: str
    width: int  # as stored; orientation 6 shows it rotated a quarter turn
    height: int
    orientation: int
    icc: str | None  # a libvips built-in profile name, embedded as-is
    seed: int
    what: str


PHOTOS = (
    Photo("8k", 7680, 4320, 1, None, 8, "8K (7680x4320), landscape, no ICC profile"),
    Photo("4k", 3840, 2160, 6, None, 4, "4K (3840x2160), orientation 6 (upright 2160x3840)"),
    Photo(
        "12mp",
        4032,
        3024,
        6,
        "p3",
        12,
        "12 MP phone (4032x3024), orientation 6 (upright 3024x4032), Display P3 profile",
    ),
)
BY_NAME = {photo.name: photo for photo in PHOTOS}


def ensure(names: list[str] | None = None) -> dict[str, Path]:
    """The cached file of each photo, generating the missing ones."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for photo in PHOTOS if names is None else [BY_NAME[n] for n in names]:
        path = CACHE / f"{photo.name}.jpg"
        if not path.exists():
            print(f"  generating {photo.name} ({photo.width}x{photo.height}) ...", flush=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(_with_exif(_pixels_jpeg(photo), photo))
            tmp.rename(path)
        out[photo.name] = path
    return out


def describe(path: Path) -> dict[str, Any]:
    """Size, bits per pixel and metadata of a generated file, as the report shows them."""
    header = pyvips.Image.new_from_file(str(path), access="sequential")
    size = path.stat().st_size
    fields = set(header.get_fields())
    return {
        "file": path.name,
        "width": header.width,
        "height": header.height,
        "megapixels": round(header.width * header.height / 1e6, 1),
        "bytes": size,
        "bits_per_pixel": round(size * 8 / (header.width * header.height), 2),
        "orientation": header.get("orientation") if "orientation" in fields else 1,
        "icc_profile": "icc-profile-data" in fields,
        "gps": any(f.startswith("exif-ifd3-") for f in fields),
    }


def _field(width: int, height: int, scales: list[int], seed: int, bands: int = 1) -> Any:
    """Sum of Gaussian noise upscaled by each factor, weighted by sqrt(scale)."""
    out: Any = None
    for i, scale in enumerate(scales):
        w, h = width // scale + 3, height // scale + 3
        noise = pyvips.Image.gaussnoise(w, h, sigma=1.0, mean=0.0, seed=seed * 1000 + i * 10)
        for band in range(1, bands):
            noise = noise.bandjoin(
                pyvips.Image.gaussnoise(w, h, sigma=1.0, mean=0.0, seed=seed * 1000 + i * 10 + band)
            )
        term = noise.resize(scale, kernel="cubic").crop(0, 0, width, height) * scale**0.5
        out = term if out is None else out + term
    return out


def _pixels_jpeg(photo: Photo) -> bytes:
    w, h = photo.width, photo.height
    long_side = max(w, h)
    # Octaves from 1/8 of the frame down to 2 px (8K gets more fine detail).
    scales = []
    scale = long_side // 8
    while scale >= 2:
        scales.append(scale)
        scale //= 2
    top = scales[0] ** 0.5
    luma = _field(w, h, scales, photo.seed) * (40 / top)
    shapes = _field(w, h, [long_side // 64, long_side // 128], photo.seed + 1)
    edges = ((shapes > 0).ifthenelse(40, 0).cast("float") - 20).gaussblur(1.2)
    chroma = _field(w, h, scales[:4], photo.seed + 2, bands=3) * (15 / top)
    sensor = pyvips.Image.gaussnoise(w, h, sigma=3.5, mean=0.0, seed=photo.seed * 7)
    for band in (1, 2):
        sensor = sensor.bandjoin(
            pyvips.Image.gaussnoise(w, h, sigma=3.5, mean=0.0, seed=photo.seed * 7 + band)
        )
    rgb = (chroma + luma + edges + sensor + 120).cast("uchar").copy(interpretation="srgb")
    rgb = rgb.copy_memory()
    if photo.icc is not None:
        # Tag the pixels as P3 (they are noise; what matters is the pipeline's conversion).
        profile = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb")
        profile = profile.icc_export(output_profile=photo.icc).get("icc-profile-data")
        rgb = rgb.copy()
        rgb.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
    return bytes(rgb.jpegsave_buffer(Q=JPEG_QUALITY, keep="icc"))


def _with_exif(jpeg: bytes, photo: Photo) -> bytes:
    """``jpeg`` with an APP1 EXIF segment (written by Pillow) right after SOI."""
    exif = Image.Exif()
    exif[0x010F] = "ParleyCam"  # Make
    exif[0x0110] = "Bench 1"  # Model
    exif[0x0132] = "2026:11:21 12:00:00"  # DateTime
    exif[0x0112] = photo.orientation
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 22.0, 30.12)  # latitude
    gps[3], gps[4] = "E", (4.0, 53.0, 40.5)  # longitude
    gps[5], gps[6] = b"\x00", 12.5  # altitude above sea level
    payload = exif.tobytes()  # starts with b"Exif\0\0"
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
