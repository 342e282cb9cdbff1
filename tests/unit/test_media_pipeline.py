"""The image pipeline without a server: sniffing, probing, and what each upload turns into.

Images are made with pyvips in the test; every check decodes the output again
and looks at its pixels and fields, not at what the pipeline says it made.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pyvips
import thumbhash
from PIL import Image as PillowImage

from media.pipeline import (
    MAX_JPEG_SCANS,
    CorruptImageError,
    ImageTooComplexError,
    ImageTooLargeError,
    Processed,
    Spec,
    configure_libvips,
    jpeg_scans,
    probe,
    process,
    sniff,
)
from tests.support.images import (
    CAMERA_MAKE,
    animation,
    corners,
    is_red,
    jpeg_bomb,
    jpeg_scan_flood,
    load,
    marked_photo,
    metadata_fields,
    noisy_photo,
    png_bomb,
    solid,
    with_app_segment,
    with_camera_metadata,
)

ROOT = Path(__file__).resolve().parents[2]
THUMBNAILS = (640, 320, 160)
# EXIF's GPS IFD pointer tag, and the IFD itself as Pillow names it.
GPS_IFD = 0x8825


@pytest.fixture(scope="module", autouse=True)
def production_libvips() -> Iterator[None]:
    """libvips set up as the server sets it up (loaders blocked), undone for other modules."""
    cache = pyvips.cache_get_max(), pyvips.cache_get_max_mem()
    configure_libvips()
    yield
    pyvips.operation_block_set("VipsForeignLoad", False)
    pyvips.cache_set_max(cache[0])
    pyvips.cache_set_max_mem(cache[1])


def variants(processed: Processed) -> dict[str, Any]:
    return {v.name: v for v in processed.variants}


def save(image: Any, path: Path, **options: Any) -> Path:
    image.write_to_file(str(path), **options)
    return path


# -- sniff ----------------------------------------------------------------------


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\x00\x00\x01\x00meta"


def _head(image: Any, suffix: str) -> bytes:
    data: bytes = image.write_to_buffer(suffix)
    return data[:64]


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(_head(solid(8, 8, (1, 2, 3)), ".jpg"), "jpeg", id="jpeg"),
        pytest.param(_head(solid(8, 8, (1, 2, 3)), ".png"), "png", id="png"),
        pytest.param(_head(solid(8, 8, (1, 2, 3)), ".gif"), "gif", id="gif89a"),
        pytest.param(b"GIF87a\x08\x00\x08\x00\x80\x00\x00", "gif", id="gif87a"),
        pytest.param(_head(solid(8, 8, (1, 2, 3)), ".webp"), "webp", id="webp"),
        pytest.param(_ftyp(b"heic", b"mif1", b"heic"), "heic", id="heic"),
        pytest.param(_ftyp(b"mif1", b"mif1", b"heix"), "heic", id="heic-compatible-brand"),
        pytest.param(_ftyp(b"avif", b"mif1", b"avif", b"miaf"), "avif", id="avif"),
        pytest.param(_ftyp(b"mif1", b"mif1", b"miaf", b"avif"), "avif", id="avif-compatible"),
        pytest.param(b"hello, this is plain text, not an image at all", None, id="text"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\xff\xd8", None, id="truncated-jpeg"),
        pytest.param(b"\x89PNG\r\n", None, id="truncated-png"),
        pytest.param(b"GIF8", None, id="truncated-gif"),
        pytest.param(b"RIFF\x10\x00\x00\x00WEB", None, id="truncated-webp"),
        pytest.param(b"\x00\x00\x00\x18ftyp", None, id="truncated-ftyp"),
        pytest.param(b"RIFF\x10\x00\x00\x00WAVEfmt ", None, id="riff-wave"),
        pytest.param(_ftyp(b"isom", b"isom", b"mp42"), None, id="mp4-video"),
        pytest.param(b"II*\x00\x08\x00\x00\x00", None, id="tiff"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg'/>", None, id="svg"),
    ],
)
def test_sniff_reads_the_format_from_the_magic_bytes(head: bytes, expected: str | None) -> None:
    """Each supported format is known by its first bytes; anything else (or too little) is None."""
    assert sniff(head) == expected


def test_sniff_knows_a_real_avif_file(tmp_path: Path) -> None:
    """An AVIF written by libheif is sniffed as avif (not as HEIC, whose box it shares)."""
    path = save(solid(16, 16, (9, 9, 9)), tmp_path / "a.avif", compression="av1")
    assert sniff(path.read_bytes()[:64]) == "avif"


# -- an 8K phone photo ----------------------------------------------------------

SENSOR = (7680, 4320)  # landscape on the sensor; orientation 6 shows it portrait


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8K JPEG as a phone writes it: sideways pixels, EXIF orientation 6, GPS, an ICC profile."""
    image = with_camera_metadata(marked_photo(*SENSOR), orientation=6)
    path = tmp_path_factory.mktemp("photo") / "8k.jpg"
    image.jpegsave(str(path), Q=85, profile="srgb")
    return path


@pytest.fixture(scope="module")
def processed_photo(phone_photo: Path) -> Processed:
    return process(phone_photo, "jpeg", Spec())


def test_the_test_photo_really_carries_orientation_gps_and_a_profile(phone_photo: Path) -> None:
    """Precondition: the source has EXIF orientation 6, a GPS position and an ICC profile."""
    with PillowImage.open(phone_photo) as pillow:
        exif = pillow.getexif()
        assert exif[0x0112] == 6  # Orientation
        gps = exif.get_ifd(GPS_IFD)
        assert gps[1] == "N" and tuple(float(v) for v in gps[2]) == (51.0, 30.0, 12.34)
        assert pillow.size == SENSOR
    image = pyvips.Image.new_from_file(str(phone_photo))
    assert image.get("orientation") == 6
    fields = set(image.get_fields())
    assert {"exif-data", "icc-profile-data", "exif-ifd3-GPSLatitude"} <= fields
    assert CAMERA_MAKE.encode() in phone_photo.read_bytes()


def test_8k_photo_is_turned_upright_and_fitted_in_full_hd(processed_photo: Processed) -> None:
    """Orientation 6 is a 90° clockwise turn: full is 608x1080 with the red block top-right."""
    assert (processed_photo.width, processed_photo.height) == (608, 1080)
    assert processed_photo.animated is False
    assert processed_photo.source.width == SENSOR[0] and processed_photo.source.height == SENSOR[1]
    for name in ("full.webp", "full.jpg"):
        variant = variants(processed_photo)[name]
        image = load(variant.data)
        assert (image.width, image.height) == (variant.width, variant.height) == (608, 1080)
        # The sensor's top-left block, turned clockwise, is now top-right, and only there.
        seen = corners(image)
        assert is_red(seen["top-right"]), (name, seen)
        assert not any(is_red(seen[c]) for c in ("top-left", "bottom-left", "bottom-right"))
        # It covers the top quarter of the height and the right quarter of the width.
        assert is_red(image.getpoint(image.width - 10, int(image.height * 0.22)))
        assert not is_red(image.getpoint(image.width - 10, int(image.height * 0.28)))
        assert is_red(image.getpoint(int(image.width * 0.77), 10))
        assert not is_red(image.getpoint(int(image.width * 0.72), 10))


def test_8k_photo_thumbnails_are_sized_on_the_long_side(processed_photo: Processed) -> None:
    """640, 320 and 160 px on the long (upright: vertical) side, in WebP and JPEG, upright too."""
    by_name = variants(processed_photo)
    assert sorted(by_name) == sorted(
        f"{size}.{ext}" for size in ("full", *map(str, THUMBNAILS)) for ext in ("webp", "jpg")
    )
    for size in THUMBNAILS:
        for ext, content_type in (("webp", "image/webp"), ("jpg", "image/jpeg")):
            variant = by_name[f"{size}.{ext}"]
            assert variant.content_type == content_type
            image = load(variant.data)
            assert (image.width, image.height) == (variant.width, variant.height)
            assert image.height == size and image.width == round(size * 9 / 16)
            assert is_red(corners(image, inset=2)["top-right"])
            assert not is_red(corners(image, inset=2)["top-left"])


def test_no_variant_keeps_any_metadata(processed_photo: Processed) -> None:
    """No EXIF, GPS, XMP, IPTC, ICC profile or orientation survives, in fields or in bytes."""
    for variant in processed_photo.variants:
        image = load(variant.data)
        fields = set(image.get_fields())
        for forbidden in ("exif-data", "xmp-data", "iptc-data", "icc-profile-data", "orientation"):
            assert forbidden not in fields, (variant.name, forbidden)
        assert not any(f.startswith("exif-") for f in fields), variant.name
        assert metadata_fields(image) == set(), variant.name
        assert b"Exif" not in variant.data, variant.name
        assert b"ICC_PROFILE" not in variant.data and b"ICCP" not in variant.data, variant.name
        assert CAMERA_MAKE.encode() not in variant.data, variant.name
        with PillowImage.open(io.BytesIO(variant.data)) as pillow:
            exif = pillow.getexif()
            assert len(exif) == 0 and not exif.get_ifd(GPS_IFD), variant.name
            assert "icc_profile" not in pillow.info, variant.name


# -- sizes, alpha, colour -------------------------------------------------------


def test_small_image_is_never_upscaled(tmp_path: Path) -> None:
    """A 300x200 image stays 300x200 in full, 640 and 320; only 160 shrinks it."""
    path = save(marked_photo(300, 200), tmp_path / "small.png")
    processed = process(path, "png", Spec())
    assert (processed.width, processed.height) == (300, 200)
    expected = {"full": (300, 200), "640": (300, 200), "320": (300, 200), "160": (160, 107)}
    for variant in processed.variants:
        size = variant.name.split(".")[0]
        image = load(variant.data)
        assert (image.width, image.height) == (variant.width, variant.height) == expected[size]
        assert is_red(corners(image, inset=2)["top-left"]), variant.name


# thumbhash 0.1.2 (rgba_to_thumb_hash) reads its alpha channel into a tuple by
# operator precedence and raises TypeError whenever any pixel is not opaque;
# media/pipeline.py _thumbhash passes the alpha through (upload: 500).
def test_png_with_alpha_keeps_it_in_webp_and_flattens_the_jpeg_onto_white(tmp_path: Path) -> None:
    """WebP variants keep 4 bands (transparent stays transparent); JPEG puts it on white."""
    left = solid(100, 100, (0, 0, 255, 0))  # transparent (its colour must not show)
    right = solid(100, 100, (0, 0, 255, 255))  # opaque blue
    path = save(left.join(right, "horizontal"), tmp_path / "alpha.png")
    processed = process(path, "png", Spec())
    for variant in processed.variants:
        image = load(variant.data)
        clear = image.getpoint(5, image.height // 2)
        solid_blue = image.getpoint(image.width - 5, image.height // 2)
        if variant.name.endswith(".webp"):
            assert image.bands == 4 and image.hasalpha(), variant.name
            assert clear[3] < 10 and solid_blue[3] > 245, variant.name
        else:
            assert image.bands == 3, variant.name
            assert min(clear) > 240, (variant.name, clear)  # white, not the hidden blue
        assert solid_blue[2] > 230 and solid_blue[0] < 25, (variant.name, solid_blue)


def test_opaque_rgba_png_is_processed(tmp_path: Path) -> None:
    """An RGBA PNG whose alpha is all 255 comes through; nothing turns transparent."""
    path = save(solid(120, 80, (0, 200, 0, 255)), tmp_path / "opaque.png")
    processed = process(path, "png", Spec())
    for variant in processed.variants:
        image = load(variant.data)
        assert image.format == "uchar"
        pixel = image.getpoint(60, 40)
        # libwebp drops an alpha band that is opaque everywhere; JPEG has none.
        assert image.bands == 3 or pixel[3] == 255, (variant.name, pixel)
        assert abs(pixel[1] - 200) < 12 and pixel[0] < 12, (variant.name, pixel)


def _assert_8bit_colour(processed: Processed) -> None:
    for variant in processed.variants:
        image = load(variant.data)
        assert image.format == "uchar", variant.name
        assert image.interpretation in ("srgb", "b-w"), (variant.name, image.interpretation)
        assert metadata_fields(image) == set(), variant.name


def test_16_bit_png_becomes_8_bit_srgb_with_the_same_colours(tmp_path: Path) -> None:
    """A 48-bit RGB PNG is scaled to 8 bits (65535 -> 255, 32768 -> 128), not clipped or wrapped."""
    xyz = pyvips.Image.xyz(256, 128)
    deep = (xyz[0] * 256).bandjoin([xyz[1] * 0 + 32768, xyz[0] * 0 + 65535])
    path = save(deep.cast("ushort").copy(interpretation="rgb16"), tmp_path / "deep.png")
    assert pyvips.Image.new_from_file(str(path)).format == "ushort"
    processed = process(path, "png", Spec())
    _assert_8bit_colour(processed)
    image = load(variants(processed)["full.jpg"].data)
    red, green, blue = image.getpoint(200, 64)
    assert abs(red - 200) < 12 and abs(green - 128) < 12 and blue > 240


@pytest.mark.parametrize("depth", [8, 16])
def test_greyscale_png_becomes_8_bit_grey_or_srgb(tmp_path: Path, depth: int) -> None:
    """A grey PNG (8 or 16 bit) comes out 8-bit, still grey (R = G = B) and the same brightness."""
    ramp = pyvips.Image.xyz(256, 64)[0]
    if depth == 16:
        ramp = (ramp * 257).cast("ushort").copy(interpretation="grey16")
    else:
        ramp = ramp.cast("uchar").copy(interpretation="b-w")
    path = save(ramp, tmp_path / f"grey{depth}.png")
    processed = process(path, "png", Spec())
    _assert_8bit_colour(processed)
    for name in ("full.webp", "full.jpg"):
        image = load(variants(processed)[name].data)
        pixel = image.getpoint(128, 32)
        assert max(pixel[:3]) - min(pixel[:3]) < 6, (name, pixel)
        assert abs(pixel[0] - 128) < 8, (name, pixel)


@pytest.mark.parametrize("embedded_profile", [True, False])
def test_cmyk_jpeg_becomes_srgb(tmp_path: Path, embedded_profile: bool) -> None:
    """A CMYK JPEG (with or without its ICC profile) comes out 3-band sRGB, red still red."""
    cmyk = solid(200, 100, (230, 20, 20)).colourspace("cmyk")
    if not embedded_profile:
        cmyk = cmyk.copy()
        cmyk.remove("icc-profile-data")
    path = save(cmyk, tmp_path / "cmyk.jpg")
    loaded = pyvips.Image.new_from_file(str(path))
    assert loaded.interpretation == "cmyk" and loaded.bands == 4
    assert bool(loaded.get_typeof("icc-profile-data")) is embedded_profile
    processed = process(path, "jpeg", Spec())
    _assert_8bit_colour(processed)
    for variant in processed.variants:
        image = load(variant.data)
        assert image.bands == 3 and image.interpretation == "srgb", variant.name
        red, green, blue = image.getpoint(100, 50)
        assert red > 190 and green < 70 and blue < 70, (variant.name, red, green, blue)


def test_avif_is_decoded_and_turned_into_the_usual_variants(tmp_path: Path) -> None:
    """An AVIF upload (HEIF loader) gives the eight WebP/JPEG variants, pixels intact."""
    path = save(marked_photo(400, 300), tmp_path / "photo.avif", compression="av1")
    processed = process(path, "avif", Spec())
    assert len(processed.variants) == 8
    image = load(variants(processed)["full.jpg"].data)
    assert (image.width, image.height) == (400, 300)
    assert is_red(corners(image)["top-left"]) and not is_red(corners(image)["bottom-right"])


# -- animation ------------------------------------------------------------------

FRAME_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def _close(pixel: list[float], colour: tuple[int, int, int], tolerance: float = 30) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


@pytest.mark.parametrize("suffix", ["gif", "webp"])
def test_animation_stays_animated_in_full_webp_only(tmp_path: Path, suffix: str) -> None:
    """full.webp keeps every frame, in order, with its timing; JPEG and thumbnails are frame 1."""
    path = save(animation(FRAME_COLOURS, 120, 90), tmp_path / f"anim.{suffix}")
    processed = process(path, suffix, Spec())
    assert processed.animated is True
    assert processed.source.frames == len(FRAME_COLOURS)
    assert (processed.width, processed.height) == (120, 90)

    full = load(variants(processed)["full.webp"].data, animated=True)
    assert full.get("n-pages") == len(FRAME_COLOURS)
    assert full.get("page-height") == 90 and full.height == 90 * len(FRAME_COLOURS)
    assert list(full.get("delay")) == [100] * len(FRAME_COLOURS)
    for index, colour in enumerate(FRAME_COLOURS):
        assert _close(full.getpoint(60, index * 90 + 45), colour), (index, colour)

    for variant in processed.variants:
        if variant.name == "full.webp":
            continue
        image = load(variant.data, animated=variant.name.endswith(".webp"))
        pages = image.get("n-pages") if image.get_typeof("n-pages") else 1
        assert pages == 1, variant.name
        assert (image.width, image.height) == (variant.width, variant.height) == (120, 90)
        assert _close(image.getpoint(60, 45), FRAME_COLOURS[0]), variant.name


def test_large_animation_is_fitted_frame_by_frame(tmp_path: Path) -> None:
    """Frames larger than the box are each fitted into it; thumbnails come from frame 1."""
    # A small box keeps this quick: the fitting is the same at 1920x1080.
    spec = Spec(full_width=192, full_height=108, thumbnails=(64, 32))
    path = save(animation(FRAME_COLOURS[:3], 300, 200), tmp_path / "big.gif")
    processed = process(path, "gif", spec)
    assert (processed.width, processed.height) == (162, 108)
    full = load(variants(processed)["full.webp"].data, animated=True)
    assert (full.width, full.get("page-height"), full.get("n-pages")) == (162, 108, 3)
    assert _close(full.getpoint(80, 2 * 108 + 50), FRAME_COLOURS[2])
    assert sorted(variants(processed)) == sorted(
        f"{size}.{ext}" for size in ("full", "64", "32") for ext in ("webp", "jpg")
    )
    thumb = load(variants(processed)["64.jpg"].data)
    assert (thumb.width, thumb.height) == (64, 43)
    assert _close(thumb.getpoint(32, 20), FRAME_COLOURS[0])


def test_single_frame_gif_is_not_animated(tmp_path: Path) -> None:
    """A one-frame GIF is an ordinary still image."""
    path = save(solid(50, 40, (0, 0, 255)), tmp_path / "still.gif")
    processed = process(path, "gif", Spec())
    assert processed.animated is False
    full = load(variants(processed)["full.webp"].data, animated=True)
    assert (full.get("n-pages") if full.get_typeof("n-pages") else 1) == 1


# -- refusals -------------------------------------------------------------------

_BOMB_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
from media.pipeline import ImageTooLargeError, Spec, configure_libvips, probe, process
configure_libvips()
path, fmt = Path(sys.argv[1]), sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
codes = []
for attempt in (lambda: probe(path, fmt, 100_000_000), lambda: process(path, fmt, Spec())):
    try:
        attempt()
        codes.append("accepted")
    except ImageTooLargeError as exc:
        codes.append(exc.code)
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"codes": codes, "seconds": seconds, "grew_kib": after - before}))
"""


@pytest.mark.parametrize("stray", [b"", b"junk\x00\xff\x00 between segments"], ids=["", "stray"])
def test_jpeg_with_too_many_scans_is_refused_before_decoding(tmp_path: Path, stray: bytes) -> None:
    """Each scan is a pass over the whole image: past the limit, 422 before any decoding."""
    path = tmp_path / "scans.jpg"
    path.write_bytes(jpeg_scan_flood(MAX_JPEG_SCANS, stray=stray))
    assert jpeg_scans(path, stop_after=10_000) == MAX_JPEG_SCANS
    probe(path, "jpeg", 100_000_000)  # at the limit: allowed

    path.write_bytes(jpeg_scan_flood(5_000, stray=stray))
    assert jpeg_scans(path, stop_after=10_000) == 5_000
    assert jpeg_scans(path, stop_after=MAX_JPEG_SCANS) == MAX_JPEG_SCANS + 1
    with pytest.raises(ImageTooComplexError) as info:
        process(path, "jpeg", Spec())
    assert (info.value.status, info.value.code) == (422, "image_too_complex")
    assert f"more than {MAX_JPEG_SCANS} scans" in info.value.message


def test_progressive_jpeg_is_processed_and_metadata_bytes_are_not_scans(tmp_path: Path) -> None:
    """A usual progressive JPEG passes; start-of-scan bytes inside metadata are not scans."""
    jpeg = marked_photo(1600, 1200).jpegsave_buffer(Q=85, interlace=True)
    path = tmp_path / "progressive.jpg"
    path.write_bytes(with_app_segment(jpeg, b"\xff\xda" * 30_000))
    scans = jpeg_scans(path, stop_after=10_000)
    assert 2 <= scans <= 12 and scans == jpeg.count(b"\xff\xda")
    result = process(path, "jpeg", Spec())
    full = load(variants(result)["full.jpg"].data)
    assert (full.width, full.height) == (1440, 1080)


@pytest.mark.parametrize(
    ("fmt", "bomb"),
    [("png", png_bomb(60000, 60000)), ("jpeg", jpeg_bomb(60000, 60000))],
    ids=["png", "jpeg"],
)
def test_decompression_bomb_is_refused_from_its_header(
    tmp_path: Path, fmt: str, bomb: bytes
) -> None:
    """A tiny file claiming 60000x60000 is refused (413) in well under a second, no memory spent."""
    path = tmp_path / f"bomb.{fmt}"
    path.write_bytes(bomb)
    assert len(bomb) < 2000 and sniff(bomb[:64]) == fmt
    with pytest.raises(ImageTooLargeError) as info:
        probe(path, fmt, 100_000_000)
    assert (info.value.status, info.value.code) == (413, "image_too_large")
    assert "60000x60000" in info.value.message
    # Measured in a fresh process: this one's peak RSS already holds an 8K decode.
    run = subprocess.run(
        [sys.executable, "-c", _BOMB_SCRIPT, str(path), fmt],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(run.stdout)
    assert result["codes"] == ["image_too_large", "image_too_large"]
    assert result["seconds"] < 1.0
    assert result["grew_kib"] < 50 * 1024


def test_frames_count_towards_the_pixel_limit(tmp_path: Path) -> None:
    """Four 120x90 frames are 43,200 pixels: over a 40,000 limit though one frame is not."""
    path = save(animation(FRAME_COLOURS, 120, 90), tmp_path / "anim.gif")
    assert probe(path, "gif", 43_200).frames == 4
    with pytest.raises(ImageTooLargeError) as info:
        probe(path, "gif", 40_000)
    assert "4 frames" in info.value.message
    with pytest.raises(ImageTooLargeError):
        process(path, "gif", Spec(max_pixels=40_000))


def test_truncated_jpeg_is_corrupt(tmp_path: Path) -> None:
    """The first half of a real JPEG: its header reads, decoding it is refused with 422."""
    data = noisy_photo(800, 600).jpegsave_buffer(Q=90)
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert probe(path, "jpeg", 100_000_000).width == 800  # the header is whole
    with pytest.raises(CorruptImageError) as info:
        process(path, "jpeg", Spec())
    assert (info.value.status, info.value.code) == (422, "corrupt_image")


# media/pipeline.py _load_fitted puts fail_on=truncated in the filename's
# option string, but vips_thumbnail's own fail_on argument (default "none")
# overrides it: a half PNG/GIF/WebP is accepted with its missing rows black.
def test_libvips_warnings_make_no_log_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """libvips warns from its worker threads; no Python log record may be made there.

    (A record is an allocation in a thread libvips is running, and can start a
    garbage collection that finalizes images inside libvips: a run aborted so.)
    """
    data = noisy_photo(800, 600).jpegsave_buffer(Q=90)
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.DEBUG), pytest.raises(CorruptImageError):
        process(path, "jpeg", Spec())
    assert not [r for r in caplog.records if r.name == "pyvips"]


def test_truncated_png_is_corrupt(tmp_path: Path) -> None:
    """The first half of a real PNG is refused with 422, not stored with black rows."""
    data = noisy_photo(800, 600).pngsave_buffer()
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError):
        process(path, "png", Spec())


def test_random_bytes_behind_jpeg_magic_are_corrupt(tmp_path: Path) -> None:
    """FF D8 FF then noise: the probe refuses it with 422 corrupt_image."""
    path = tmp_path / "noise.jpg"
    path.write_bytes(b"\xff\xd8\xff" + random.Random(7).randbytes(5000))
    assert sniff(path.read_bytes()[:64]) == "jpeg"
    with pytest.raises(CorruptImageError) as info:
        probe(path, "jpeg", 100_000_000)
    assert (info.value.status, info.value.code) == (422, "corrupt_image")
    with pytest.raises(CorruptImageError):
        process(path, "jpeg", Spec())


def test_corrupt_image_errors_do_not_name_server_files(tmp_path: Path) -> None:
    """libvips names the file in some errors; the client sees "the file", not the spool path."""
    path = tmp_path / "upload-x1y2z3"
    path.write_bytes(b"\x00\x00\x00\x1cftypavif" + bytes(16) + random.Random(1).randbytes(3000))
    assert sniff(path.read_bytes()[:64]) == "avif"
    with pytest.raises(CorruptImageError) as info:
        process(path, "avif", Spec())
    assert "the file" in info.value.message
    assert "upload-x1y2z3" not in info.value.message and str(tmp_path) not in info.value.message


def test_loaders_outside_the_list_are_blocked(tmp_path: Path) -> None:
    """A TIFF (which libvips can read) is refused as corrupt: its loader is blocked."""
    path = save(solid(32, 32, (1, 2, 3)), tmp_path / "image.tif")
    with pytest.raises(CorruptImageError):
        probe(path, "png", 100_000_000)


# -- placeholder ----------------------------------------------------------------


def _thumbhash(processed: Processed) -> list[int]:
    raw = base64.b64decode(processed.placeholder, validate=True)
    assert 5 <= len(raw) <= 40
    return list(raw)


def test_placeholder_is_a_small_thumbhash_with_the_right_shape(processed_photo: Processed) -> None:
    """The 8K photo's ThumbHash is ≤ 40 bytes and decodes to a portrait of about 9:16."""
    hashed = _thumbhash(processed_photo)
    ratio = thumbhash.thumb_hash_to_approximate_aspect_ratio(hashed)
    assert ratio == pytest.approx(608 / 1080, rel=0.15)
    width, height, rgba = thumbhash.thumb_hash_to_rgba(hashed)
    assert height > width and len(rgba) == width * height * 4


def test_placeholder_carries_the_average_colour(tmp_path: Path) -> None:
    """A plain red 300x200 picture hashes to a red, landscape placeholder."""
    path = save(solid(300, 200, (220, 10, 10)), tmp_path / "red.png")
    hashed = _thumbhash(process(path, "png", Spec()))
    assert thumbhash.thumb_hash_to_approximate_aspect_ratio(hashed) == pytest.approx(1.5, rel=0.15)
    red, green, blue, alpha = thumbhash.thumb_hash_to_average_rgba(hashed)
    assert red > 0.75 and green < 0.15 and blue < 0.15 and alpha == 1.0
