"""Test images made with pyvips: photos with a marker, camera metadata, animations, bombs.

Every picture has something recognisable in it (a red block in a known corner,
a colour per frame), so a test can tell a rotated or flipped result from the
right one, not only that an image came out.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pyvips

RED = (255, 0, 0)

# Fields libvips reports for any decoded image; everything else is metadata.
PIXEL_FIELDS = frozenset(
    {
        "width",
        "height",
        "bands",
        "format",
        "coding",
        "interpretation",
        "xoffset",
        "yoffset",
        "xres",
        "yres",
        "filename",
        "vips-loader",
        # How the JPEG was coded, read from its frame header: not metadata.
        "jpeg-multiscan",
        "jpeg-chroma-subsample",
        # Animation timing of a WebP or GIF: part of the picture.
        "n-pages",
        "page-height",
        "delay",
        "loop",
        "gif-delay",
        "gif-loop",
    }
)

# A position anyone could be found at: 51°30'12.34" N, 0°7'39.99" W.
GPS_TAGS = {
    "exif-ifd3-GPSLatitudeRef": "N",
    "exif-ifd3-GPSLatitude": "51/1 30/1 1234/100",
    "exif-ifd3-GPSLongitudeRef": "W",
    "exif-ifd3-GPSLongitude": "0/1 7/1 3999/100",
}
CAMERA_MAKE = "ParleyTestCam"


def solid(width: int, height: int, colour: tuple[int, ...]) -> Any:
    """An 8-bit sRGB (or sRGBA, with four values) image of one colour."""
    bands = len(colour)
    image = pyvips.Image.black(width, height, bands=bands) + list(colour)
    return image.cast("uchar").copy(interpretation="srgb")


def marked_photo(width: int, height: int) -> Any:
    """A smooth blue-green gradient with a red block over the top-left quarter.

    The block is ``width // 4`` by ``height // 4`` pixels from (0, 0); no other
    part of the picture is red, so its corner gives away any rotation or flip.
    """
    xyz = pyvips.Image.xyz(width, height)
    green = xyz[0] * (200 / width)
    blue = xyz[1] * (200 / height)
    base = (green * 0).bandjoin([green, blue]).cast("uchar").copy(interpretation="srgb")
    return base.draw_rect(list(RED), 0, 0, width // 4, height // 4, fill=True)


def noisy_photo(width: int, height: int, sigma: float = 12) -> Any:
    """A gradient with grain: JPEG sizes like a camera's, not like a flat test card."""
    xyz = pyvips.Image.xyz(width, height)
    noise = pyvips.Image.gaussnoise(width, height, sigma=sigma, mean=0)
    red = xyz[0] * (255 / width) + noise
    green = xyz[1] * (255 / height) + noise
    blue = noise + 128
    return red.bandjoin([green, blue]).cast("uchar").copy(interpretation="srgb")


def with_camera_metadata(image: Any, *, orientation: int) -> Any:
    """A copy tagged like a phone photo: EXIF orientation, GPS position and camera make."""
    tagged = image.copy()
    tagged.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    for name, value in GPS_TAGS.items():
        tagged.set_type(pyvips.GValue.gstr_type, name, value)
    tagged.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Make", CAMERA_MAKE)
    return tagged


def animation(colours: list[tuple[int, int, int]], width: int, height: int) -> Any:
    """One frame per colour, stacked as libvips holds animations, 100 ms each, looping."""
    frames = [solid(width, height, colour) for colour in colours]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", height)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * len(colours))
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    return strip


def load(data: bytes, *, animated: bool = False) -> Any:
    """Decode image bytes (every frame of an animated WebP or GIF when ``animated``)."""
    options = {"n": -1} if animated else {}
    return pyvips.Image.new_from_buffer(data, "", **options)


def metadata_fields(image: Any) -> set[str]:
    """The fields of a decoded image that are not about its pixels."""
    return set(image.get_fields()) - PIXEL_FIELDS


def is_red(pixel: list[float], tolerance: float = 40) -> bool:
    red, green, blue = pixel[:3]
    return red > 255 - tolerance and green < tolerance and blue < tolerance


def corners(image: Any, inset: int = 4) -> dict[str, list[float]]:
    """The pixel a little inside each corner: top-left, top-right, bottom-left, bottom-right."""
    right, bottom = image.width - 1 - inset, image.height - 1 - inset
    return {
        "top-left": image.getpoint(inset, inset),
        "top-right": image.getpoint(right, inset),
        "bottom-left": image.getpoint(inset, bottom),
        "bottom-right": image.getpoint(right, bottom),
    }


def png_bomb(width: int, height: int) -> bytes:
    """A real, tiny PNG whose IHDR claims ``width`` x ``height`` (CRC fixed, so it parses)."""
    data = bytearray(solid(16, 16, (10, 20, 30)).pngsave_buffer())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    # The chunk CRC covers the type and the data: bytes 12..29.
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real, tiny baseline JPEG whose SOF0 header claims ``width`` x ``height``."""
    data = bytearray(solid(16, 16, (10, 20, 30)).jpegsave_buffer(Q=90))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    # FFC0, length (2), precision (1), then height and width, 2 bytes each.
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_scan_flood(scans: int, *, stray: bytes = b"") -> bytes:
    """A small progressive JPEG whose last scan is repeated until it has ``scans``.

    ``stray`` goes between two segments before the first scan: bytes a decoder
    skips with a warning, which must not hide the scans after them.
    """
    data = solid(96, 64, (90, 120, 150)).jpegsave_buffer(Q=80, interlace=True)
    first, last = data.find(b"\xff\xda"), data.rfind(b"\xff\xda")
    assert 1 < data.count(b"\xff\xda") < scans and data.endswith(b"\xff\xd9")
    body = data[:first] + stray + data[first:-2]
    return body + data[last:-2] * (scans - data.count(b"\xff\xda")) + b"\xff\xd9"


def with_app_segment(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an APP15 segment carrying ``payload`` right after its SOI."""
    assert jpeg.startswith(b"\xff\xd8") and len(payload) < 65_534
    return jpeg[:2] + b"\xff\xef" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
