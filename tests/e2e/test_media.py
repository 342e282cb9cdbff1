"""Media end to end on real nodes: uploads, downloads, access, limits, encrypted attachments, S3.

Most tests use the shared SQLite node. Limits that would get in everyone's
way (a 200 kB upload cap, a small quota, a burst of three uploads, one image
worker and no queue) live on one module node of their own, and S3 on another
(moto's server on loopback). Encrypted attachments cross the two-node cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from eth_account import Account
from moto.server import ThreadedMotoServer

from client import ParleyApiError, ParleyClient
from media.pipeline import Spec, process
from tests.e2e.conftest import BASE_ENV
from tests.support.clients import signed_in_client
from tests.support.images import (
    CAMERA_MAKE,
    corners,
    is_red,
    jpeg_scan_flood,
    load,
    marked_photo,
    metadata_fields,
    noisy_photo,
    png_bomb,
    solid,
    with_camera_metadata,
)
from tests.support.server import ServerProcess

VARIANT_NAMES = [
    f"{size}.{ext}" for size in ("full", "640", "320", "160") for ext in ("webp", "jpg")
]
# Every name a variant can be fetched by, short forms included.
FETCH_NAMES = [*VARIANT_NAMES, "full", "640", "320", "160"]

TIGHT_UPLOAD_BYTES = 200_000
TIGHT_BURST = 3
S3_BUCKET = "parley-e2e-media"


# -- images, made once per module -------------------------------------------------


@dataclass(frozen=True)
class Images:
    photo_8k: bytes  # 7680x4320 sensor, EXIF orientation 6, GPS, camera make
    photo_4k: bytes  # 3840x2160 with grain, ~0.6 MB
    small: bytes  # 300x200 marked photo, JPEG
    quota_photo: bytes  # ~135 kB JPEG whose variants take ~600 kB
    quota_photo_stored: int  # what those variants take, computed here
    oversized_photo: bytes  # ~170 kB JPEG whose variants take ~970 kB: more than the quota
    oversized_photo_stored: int
    busy_png: bytes  # 6000x6000 PNG of ~120 kB that takes a worker most of a second
    truncated: bytes  # first half of a JPEG


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The module's test images, built once (the 8K and 4K ones take a second or two)."""
    root = tmp_path_factory.mktemp("media-images")
    photo_8k = with_camera_metadata(marked_photo(7680, 4320), orientation=6)
    half = noisy_photo(600, 400, sigma=20).jpegsave_buffer(Q=90)
    quota_photo = noisy_photo(1000, 750, sigma=25).jpegsave_buffer(Q=40)
    # The server makes the same bytes from the same file: this is what it will store.
    (root / "quota.jpg").write_bytes(quota_photo)
    oversized = oversized_photo()
    (root / "oversized.jpg").write_bytes(oversized)
    stored = {
        name: sum(len(v.data) for v in process(root / name, "jpeg", Spec()).variants)
        for name in ("quota.jpg", "oversized.jpg")
    }
    busy = solid(6000, 6000, (30, 90, 200)).draw_rect([255, 0, 0], 0, 0, 1500, 1500, fill=True)
    return Images(
        photo_8k=photo_8k.jpegsave_buffer(Q=85),
        photo_4k=noisy_photo(3840, 2160, sigma=4).jpegsave_buffer(Q=75),
        small=marked_photo(300, 200).jpegsave_buffer(Q=90),
        quota_photo=quota_photo,
        quota_photo_stored=stored["quota.jpg"],
        oversized_photo=oversized,
        oversized_photo_stored=stored["oversized.jpg"],
        busy_png=busy.pngsave_buffer(compression=9),
        truncated=half[: len(half) // 2],
    )


def oversized_photo() -> bytes:
    """A ~170 kB JPEG of grain whose variants take ~970 kB; different bytes every call."""
    data: bytes = noisy_photo(1100, 800, sigma=60).jpegsave_buffer(Q=20)
    return data


def unique_image(size: tuple[int, int] = (64, 48)) -> bytes:
    """A small JPEG no other test uploads (a random colour), so its blobs are its own."""
    colour = tuple(random.randrange(256) for _ in range(3))
    data: bytes = solid(*size, colour).jpegsave_buffer(Q=90)
    return data


# -- nodes --------------------------------------------------------------------------


def _sqlite_env(root: Path) -> dict[str, str]:
    return {
        **BASE_ENV,
        "PARLEY_DATABASE_URL": f"sqlite://{root}/parley.sqlite3",
        "PARLEY_AUTH_KEYS_DIR": str(root / "keys"),
        "PARLEY_MEDIA_DIR": str(root / "media"),
    }


@pytest.fixture(scope="module")
def tight_node(tmp_path_factory: pytest.TempPathFactory, images: Images) -> Iterator[ServerProcess]:
    """A node with small limits: 200 kB uploads, one worker and no queue, 3 uploads then 429.

    The quota holds the quota photo's variants once but not its next upload:
    stored <= quota < stored + upload (the upload's declared size is checked
    against what is left before a byte is read).
    """
    quota = images.quota_photo_stored + len(images.quota_photo) // 2
    # Every other upload here is at most TIGHT_UPLOAD_BYTES: the quota never refuses it first.
    assert quota > TIGHT_UPLOAD_BYTES
    assert len(images.oversized_photo) < TIGHT_UPLOAD_BYTES < quota
    assert images.oversized_photo_stored > quota
    root = tmp_path_factory.mktemp("tight-node")
    node = ServerProcess(
        {
            **_sqlite_env(root),
            "PARLEY_MEDIA_MAX_UPLOAD_BYTES": str(TIGHT_UPLOAD_BYTES),
            "PARLEY_MEDIA_QUOTA_BYTES": str(quota),
            "PARLEY_MEDIA_UPLOADS_BURST": str(TIGHT_BURST),
            # One token every 10 s: a burst spent in a test stays spent for the test.
            "PARLEY_MEDIA_UPLOADS_PER_MINUTE": "6",
            "PARLEY_MEDIA_WORKERS": "1",
            "PARLEY_MEDIA_QUEUE": "0",
        },
        name="tight-node",
    ).start()
    yield node
    node.stop()


def media_dir(node: ServerProcess) -> Path:
    return Path(node.env["PARLEY_MEDIA_DIR"])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the bucket the S3 node uses."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        s3_client(endpoint).create_bucket(Bucket=S3_BUCKET)
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def s3_node(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str
) -> Iterator[ServerProcess]:
    """A node storing media in an S3 bucket (moto)."""
    root = tmp_path_factory.mktemp("s3-node")
    node = ServerProcess(
        {
            **_sqlite_env(root),
            "PARLEY_MEDIA_STORE": "s3",
            "PARLEY_MEDIA_S3_ENDPOINT_URL": moto_endpoint,
            "PARLEY_MEDIA_S3_BUCKET": S3_BUCKET,
            "PARLEY_MEDIA_S3_ACCESS_KEY_ID": "testing",
            "PARLEY_MEDIA_S3_SECRET_ACCESS_KEY": "testing",
        },
        name="s3-node",
    ).start()
    yield node
    node.stop()


# -- people and requests ----------------------------------------------------------

MakeUser = Callable[..., Awaitable[ParleyClient]]


@pytest.fixture
async def people() -> AsyncIterator[MakeUser]:
    """``await people(node, name, connect=False)``: a signed-in user, closed after the test."""
    made: list[ParleyClient] = []

    async def make(node: ServerProcess, name: str = "", *, connect: bool = False) -> ParleyClient:
        client = await signed_in_client(node, name, connect=connect)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def raw(client: ParleyClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """An authenticated request whose response is returned as is."""
    headers = {
        "Authorization": f"Bearer {await client.fresh_access_token()}",
        **kwargs.pop("headers", {}),
    }
    return await client.http.request(method, path, headers=headers, **kwargs)


async def upload(client: ParleyClient, data: bytes, **headers: str) -> httpx.Response:
    return await raw(client, "POST", "/v1/media", content=data, headers=headers)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is ``status`` with the JSON error body ``{"error": {"code", "message"}}``."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


async def refused(call: Awaitable[Any]) -> ParleyApiError:
    with pytest.raises(ParleyApiError) as info:
        await call
    return info.value


async def settle(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (the caller asserts it afterwards)."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


def uid(client: ParleyClient) -> str:
    assert client.user_id is not None
    return client.user_id


async def next_of_kind(client: ParleyClient, kind: str) -> dict[str, Any]:
    """The next message of ``kind`` on the client's socket (system notices skipped)."""
    while True:
        message = await client.next_message(timeout=10)
        if message["kind"] == kind:
            return message


async def assert_hidden(client: ParleyClient, media_id: str) -> None:
    """``client`` gets 404 media_not_found for the metadata and every variant."""
    assert_error(await raw(client, "GET", f"/v1/media/{media_id}"), 404, "media_not_found")
    for name in FETCH_NAMES:
        response = await raw(client, "GET", f"/v1/media/{media_id}/{name}")
        assert_error(response, 404, "media_not_found")


async def assert_visible(client: ParleyClient, media: dict[str, Any]) -> None:
    """``client`` sees the metadata and gets every variant's bytes."""
    assert (await client.media(media["id"]))["id"] == media["id"]
    for variant in media["variants"]:
        data = await client.download_media(media["id"], variant["name"])
        assert len(data) == variant["bytes"], variant["name"]


# -- uploading and fetching -----------------------------------------------------------


async def test_8k_photo_upload_gives_upright_variants_without_metadata(
    sqlite_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """An 8K phone JPEG: 201 with eight variants; full is 608x1080, upright, no EXIF or GPS."""
    source = set(load(images.photo_8k).get_fields())
    assert {"exif-data", "orientation", "exif-ifd3-GPSLatitude"} <= source  # what must go
    alice = await people(sqlite_node, "alice")
    answers: list[httpx.Response] = []

    async def remember(response: httpx.Response) -> None:
        answers.append(response)

    alice.http.event_hooks["response"].append(remember)
    media = await alice.upload_image(images.photo_8k)
    assert [(r.request.method, r.status_code) for r in answers] == [("POST", 201)]
    assert answers[0].request.url.path == "/v1/media"
    assert media["kind"] == "image" and media["format"] == "jpeg"
    assert media["owner_id"] == uid(alice) and media["public"] is False
    assert (media["width"], media["height"], media["animated"]) == (608, 1080, False)
    assert media["placeholder"] and len(base64.b64decode(media["placeholder"])) <= 40
    sizes = {v["name"]: (v["width"], v["height"]) for v in media["variants"]}
    assert [v["name"] for v in media["variants"]] == VARIANT_NAMES
    assert sizes["full.webp"] == sizes["full.jpg"] == (608, 1080)
    assert sizes["640.jpg"] == (360, 640) and sizes["160.webp"] == (90, 160)
    assert media["bytes"] == sum(v["bytes"] for v in media["variants"])
    assert all(v["url"] == f"/v1/media/{media['id']}/{v['name']}" for v in media["variants"])
    assert await alice.media(media["id"]) == media

    for name, content_type in (("full", "image/webp"), ("full.jpg", "image/jpeg")):
        response = await raw(alice, "GET", f"/v1/media/{media['id']}/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        image = load(response.content)
        assert (image.width, image.height) == (608, 1080)
        assert is_red(corners(image)["top-right"]) and not is_red(corners(image)["top-left"])
        assert metadata_fields(image) == set(), name
        assert b"Exif" not in response.content and CAMERA_MAKE.encode() not in response.content
    thumb = load(await alice.download_media(media["id"], "160.jpg"))
    assert (thumb.width, thumb.height) == (90, 160) and metadata_fields(thumb) == set()


async def test_bad_uploads_get_json_errors_and_leave_no_spool_files(
    tight_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """Corrupt, non-image, empty, oversized (declared or chunked), bombs, no token: 4xx JSON."""
    # Three uploads each before the burst runs out.
    first, second, third, fourth = [await people(tight_node, f"bad-{i}") for i in range(4)]
    too_big = bytes(250_000)

    assert_error(await upload(first, images.truncated), 422, "corrupt_image")
    text = b"Dear diary, today I uploaded a text file and called it a photo.\n" * 20
    response = await upload(
        first,
        text,
        **{"Content-Type": "image/jpeg", "Content-Disposition": 'attachment; filename="cat.jpg"'},
    )
    assert_error(response, 415, "unsupported_media_type")
    assert_error(await upload(first, b""), 422, "empty_upload")

    declared = await upload(second, too_big)
    assert declared.request.headers["content-length"] == str(len(too_big))
    assert_error(declared, 413, "upload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(too_big), 16_384):
            yield too_big[offset : offset + 16_384]

    streamed = await upload(second, chunks())  # type: ignore[arg-type]
    assert "content-length" not in streamed.request.headers
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    assert_error(streamed, 413, "upload_too_large")
    assert_error(await upload(second, png_bomb(60000, 60000)), 413, "image_too_large")

    noise = b"\xff\xd8\xff" + random.Random(3).randbytes(4000)
    assert_error(await upload(third, noise), 422, "corrupt_image")
    assert_error(await upload(fourth, jpeg_scan_flood(5_000)), 422, "image_too_complex")
    form = await raw(third, "POST", "/v1/media", files={"file": ("cat.jpg", images.small)})
    assert_error(form, 415, "unsupported_media_type")  # the body is the form, not the image

    async with httpx.AsyncClient(base_url=tight_node.url) as anonymous:
        nobody = await anonymous.post("/v1/media", content=images.small)
    assert_error(nobody, 401, "unauthenticated")
    assert nobody.headers["www-authenticate"].startswith("Bearer")

    statuses = [r["status"] for r in tight_node.records if "status" in r]
    assert statuses and max(statuses) < 500, "a bad upload was answered with a 5xx"

    # A client that goes away halfway through its body leaves nothing behind either.
    # (The node logs it as an unhandled ClientDisconnect with a traceback and a 500.)
    spool = media_dir(tight_node) / "tmp"
    _, writer = await asyncio.open_connection("127.0.0.1", tight_node.port)
    token = await third.fresh_access_token()
    writer.write(
        b"POST /v1/media HTTP/1.1\r\nHost: x\r\nContent-Length: 150000\r\n"
        + f"Authorization: Bearer {token}\r\n\r\n".encode()
        + images.small[:5000]
    )
    await writer.drain()
    await settle(lambda: len(list(spool.iterdir())) == 1)
    assert len(list(spool.iterdir())) == 1, "the half-sent upload is being spooled"
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()

    await settle(lambda: not list(spool.iterdir()))
    assert spool.is_dir() and list(spool.iterdir()) == []


# transparent pixels crash media/pipeline.py _thumbhash (thumbhash 0.1.2 bug): 500.
async def test_png_with_transparency_uploads(sqlite_node: ServerProcess, people: MakeUser) -> None:
    """A PNG with transparent pixels is accepted; its WebP keeps the alpha channel."""
    alice = await people(sqlite_node, "alice")
    half_clear = solid(200, 100, (0, 0, 255, 0)).join(
        solid(200, 100, (0, 0, 255, 255)), "horizontal"
    )
    media = await alice.upload_image(half_clear.pngsave_buffer())
    webp = load(await alice.download_media(media["id"], "full"))
    assert webp.bands == 4 and webp.getpoint(5, 50)[3] < 10


# Polls /healthz every 20 ms from its own process (no GIL shared with the uploads)
# until its stdin closes, then prints the latencies.
_HEALTH_POLLER = """
import json, sys, threading, time
import httpx

stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
latencies, failures = [], []
with httpx.Client(base_url=sys.argv[1], timeout=5) as http:
    http.get("/healthz")  # the connection is opened outside the measurement
    print("polling", flush=True)
    while not stop.is_set():
        started = time.perf_counter()
        response = http.get("/healthz")
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            failures.append(response.status_code)
        time.sleep(0.02)
print(json.dumps({"latencies": latencies, "failures": failures}))
"""


async def test_concurrent_uploads_do_not_stall_the_event_loop(
    sqlite_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """20 parallel 4K uploads all succeed (capacity 2 + 32) while /healthz keeps answering.

    Processing one 4K image takes about 200 ms of CPU; done on the event loop,
    it would hold up nearly every poll during the burst by that much. Off the
    loop, the polls stay fast but for the odd one the OS scheduler delays on
    two busy cores, so the test allows 1 in 20 over 100 ms and none over 500.
    """
    uploaders = [await people(sqlite_node, f"burst-{i}") for i in range(2)]
    poller = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HEALTH_POLLER,
        sqlite_node.url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert poller.stdin is not None and poller.stdout is not None
    try:
        assert await asyncio.wait_for(poller.stdout.readline(), 30) == b"polling\n"
        started = time.perf_counter()
        results = await asyncio.gather(
            *(uploaders[i % 2].upload_image(images.photo_4k) for i in range(20))
        )
        took = time.perf_counter() - started
    finally:
        poller.stdin.close()
        output = await asyncio.wait_for(poller.stdout.read(), 30)
        await poller.wait()
    assert len({m["id"] for m in results}) == 20
    assert all((m["width"], m["height"]) == (1920, 1080) for m in results)
    polled = json.loads(output)
    latencies = polled["latencies"]
    assert polled["failures"] == []
    assert len(latencies) >= 10, f"only {len(latencies)} polls in {took:.2f}s"
    slow = [t for t in latencies if t >= 0.1]
    assert len(slow) <= max(1, len(latencies) // 20), (
        f"{len(slow)} of {len(latencies)} polls took 100 ms or more"
    )
    assert max(latencies) < 0.5, f"slowest /healthz {max(latencies) * 1000:.0f} ms"


async def test_busy_pool_turns_extra_uploads_away_with_503(
    tight_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """One worker, no queue: uploads arriving while it works get 503 media_busy + Retry-After."""
    users = [await people(tight_node, f"busy-{i}") for i in range(6)]
    responses = await asyncio.gather(*(upload(user, images.busy_png) for user in users))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 503}, statuses
    assert statuses.count(201) >= 1 and statuses.count(503) >= 1, statuses
    for response in responses:
        if response.status_code == 503:
            assert_error(response, 503, "media_busy")
            assert int(response.headers["retry-after"]) >= 1
    # The slot comes back: a turned-away user succeeds once the worker is free.
    turned_away = next(u for u, r in zip(users, responses, strict=True) if r.status_code == 503)
    retry = await upload(turned_away, images.busy_png)
    assert retry.status_code == 201, retry.text
    assert (retry.json()["width"], retry.json()["height"]) == (1080, 1080)


# -- who may see what -------------------------------------------------------------------


async def test_access_follows_ownership_conversations_and_avatars(
    sqlite_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """Owner only; then the conversation it was posted in; then everyone once it is an avatar."""
    alice = await people(sqlite_node, "alice", connect=True)
    bob = await people(sqlite_node, "bob", connect=True)
    carol = await people(sqlite_node, "carol")
    media = await alice.upload_image(images.small)
    await assert_visible(alice, media)
    await assert_hidden(bob, media["id"])
    await assert_hidden(carol, media["id"])
    assert_error(await raw(bob, "GET", f"/v1/media/{uuid.uuid4()}"), 404, "media_not_found")

    direct = await alice.open_direct(uid(bob), mode="plaintext")
    ack = await alice.send_image(direct["id"], media["id"], caption="look")
    assert ack["kind"] == "image" and ack["body"] == {"media_id": media["id"], "caption": "look"}
    assert (await next_of_kind(bob, "image"))["id"] == ack["id"]
    await assert_visible(bob, media)
    await assert_hidden(carol, media["id"])

    # Bob cannot post Alice's image, even though he may now see it (socket or HTTP).
    error = await refused(bob.send_image(direct["id"], media["id"]))
    assert error.code == "media_not_yours"
    response = await raw(
        bob,
        "POST",
        f"/v1/conversations/{direct['id']}/messages",
        json={"client_msg_id": "theft-1", "kind": "image", "body": {"media_id": media["id"]}},
    )
    assert_error(response, 422, "media_not_yours")
    error = await refused(bob.send_image(direct["id"], str(uuid.uuid4())))
    assert error.code == "media_not_yours"

    await alice.set_avatar(media["id"])
    assert (await carol.request("GET", f"/v1/users/{uid(alice)}"))["avatar_media_id"] == media["id"]
    assert (await alice.media(media["id"]))["public"] is True
    await assert_visible(carol, media)

    # A group avatar must also be the admin's own image, public or not.
    group = await bob.create_group("crew", [uid(alice)], mode="plaintext")
    error = await refused(bob.update_conversation(group["id"], avatar_media_id=media["id"]))
    assert (error.status, error.code) == (422, "media_not_yours")
    own = await bob.upload_image(unique_image())
    await assert_hidden(carol, own["id"])
    updated = await bob.update_conversation(group["id"], avatar_media_id=own["id"])
    assert updated["avatar_media_id"] == own["id"]
    await assert_visible(carol, own)  # carol is not in the group; avatars are for everyone

    # An avatar no longer shown goes back to private: the group's at once...
    await bob.update_conversation(group["id"], clear_avatar=True)
    await assert_hidden(carol, own["id"])
    # ...and the user's once no group or profile shows it any more.
    await alice.set_avatar(None)
    assert (await carol.request("GET", f"/v1/users/{uid(alice)}"))["avatar_media_id"] is None
    await assert_hidden(carol, media["id"])
    await assert_visible(bob, media)  # still posted in the conversation bob is in


async def test_delete_removes_media_everywhere_and_only_for_its_owner(
    tight_node: ServerProcess, people: MakeUser
) -> None:
    """A stranger's delete is 404; the owner's removes metadata, variants, blobs and the avatar."""
    alice = await people(tight_node, "alice")
    bob = await people(tight_node, "bob")
    media = await alice.upload_image(unique_image())
    await alice.set_avatar(media["id"])
    await assert_visible(bob, media)
    keys = []
    for variant in media["variants"]:
        response = await raw(alice, "HEAD", f"/v1/media/{media['id']}/{variant['name']}")
        keys.append(response.headers["etag"].strip('"'))
    blobs = media_dir(tight_node) / "blobs"
    assert all((blobs / k[:2] / k[2:4] / k).is_file() for k in keys)

    assert_error(await raw(bob, "DELETE", f"/v1/media/{media['id']}"), 404, "media_not_found")
    await assert_visible(alice, media)

    response = await raw(alice, "DELETE", f"/v1/media/{media['id']}")
    assert response.status_code == 204 and response.content == b""
    await assert_hidden(alice, media["id"])
    await assert_hidden(bob, media["id"])
    assert (await bob.request("GET", f"/v1/users/{uid(alice)}"))["avatar_media_id"] is None
    assert (await alice.my_media())["media"] == []
    assert not any((blobs / k[:2] / k[2:4] / k).exists() for k in keys)
    assert_error(await raw(alice, "DELETE", f"/v1/media/{media['id']}"), 404, "media_not_found")


# -- HTTP semantics of downloads ----------------------------------------------------------


async def test_downloads_speak_etags_ranges_and_head(
    sqlite_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """ETag is the quoted SHA-256; If-None-Match 304; Range 206/416; If-Range; HEAD; bad names."""
    alice = await people(sqlite_node, "alice")
    media = await alice.upload_image(images.small)
    path = f"/v1/media/{media['id']}/full"
    whole = await raw(alice, "GET", path)
    assert whole.status_code == 200
    body, size = whole.content, len(whole.content)
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    assert whole.headers["etag"] == etag
    assert whole.headers["content-length"] == str(size)
    assert whole.headers["accept-ranges"] == "bytes"
    cache = {part.strip() for part in whole.headers["cache-control"].split(",")}
    assert {"private", "immutable"} <= cache and "public" not in cache
    assert size == next(v["bytes"] for v in media["variants"] if v["name"] == "full.webp")

    for tag in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        cached = await raw(alice, "GET", path, headers={"If-None-Match": tag})
        assert cached.status_code == 304 and cached.content == b"", tag
        assert cached.headers["etag"] == etag
    stale = await raw(alice, "GET", path, headers={"If-None-Match": '"0000"'})
    assert stale.status_code == 200 and stale.content == body

    async def ranged(spec: str, **headers: str) -> httpx.Response:
        return await raw(alice, "GET", path, headers={"Range": spec, **headers})

    first = await ranged("bytes=0-9")
    assert first.status_code == 206 and first.content == body[:10]
    assert first.headers["content-range"] == f"bytes 0-9/{size}"
    assert first.headers["content-length"] == "10"
    suffix = await ranged("bytes=-5")
    assert suffix.status_code == 206 and suffix.content == body[-5:]
    assert suffix.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    rest = await ranged("bytes=100-")
    assert rest.status_code == 206 and rest.content == body[100:]
    past_end = await ranged(f"bytes={size - 4}-{size + 1000}")
    assert past_end.status_code == 206 and past_end.content == body[-4:]
    unsatisfiable = await ranged(f"bytes={size}-{size + 100}")
    assert_error(unsatisfiable, 416, "range_not_satisfiable")
    assert unsatisfiable.headers["content-range"] == f"bytes */{size}"
    wrong_if_range = await ranged("bytes=0-9", **{"If-Range": '"0000"'})
    assert wrong_if_range.status_code == 200 and wrong_if_range.content == body
    right_if_range = await ranged("bytes=0-9", **{"If-Range": etag})
    assert right_if_range.status_code == 206 and right_if_range.content == body[:10]
    assert await alice.download_media(media["id"], "full", byte_range=(10, 19)) == body[10:20]

    head = await raw(alice, "HEAD", path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size)
    assert head.headers["etag"] == etag and head.headers["content-type"] == "image/webp"

    jpeg = await raw(alice, "GET", f"/v1/media/{media['id']}/160.jpg")
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:3] == b"\xff\xd8\xff"
    assert jpeg.headers["etag"] == f'"{hashlib.sha256(jpeg.content).hexdigest()}"'
    for name in ("original", "999", "full.png", "blob", "full.webp.jpg"):
        assert_error(
            await raw(alice, "GET", f"/v1/media/{media['id']}/{name}"), 404, "media_not_found"
        )


# server/media/service.py parse_byte_range: for "bytes=N-" the missing last
# position becomes size - 1, so N >= size fails `end < start` first and the
# header is ignored (200) instead of refused (416).
async def test_open_range_past_the_end_is_unsatisfiable(
    sqlite_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """Range: bytes=99999999- on a small variant is 416 with Content-Range: bytes */size."""
    alice = await people(sqlite_node, "alice")
    media = await alice.upload_image(images.small)
    size = next(v["bytes"] for v in media["variants"] if v["name"] == "full.webp")
    path = f"/v1/media/{media['id']}/full"
    response = await raw(alice, "GET", path, headers={"Range": "bytes=99999999-"})
    assert_error(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{size}"


# -- quota, rate and listing ---------------------------------------------------------------


async def test_quota_is_enforced_reported_and_freed_by_delete(
    tight_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """Stored bytes count against the quota: a second copy is 403 until the first is deleted."""
    alice = await people(tight_node, "alice")
    quota = int(tight_node.env["PARLEY_MEDIA_QUOTA_BYTES"])
    assert await alice.media_usage() == {"used_bytes": 0, "quota_bytes": quota, "items": 0}

    media = await alice.upload_image(images.quota_photo)
    assert media["bytes"] == sum(v["bytes"] for v in media["variants"])
    assert media["bytes"] == images.quota_photo_stored
    usage = await alice.media_usage()
    assert usage == {"used_bytes": media["bytes"], "quota_bytes": quota, "items": 1}

    error = await refused(alice.upload_image(images.quota_photo))
    assert (error.status, error.code) == (403, "quota_exceeded")
    assert await alice.media_usage() == usage

    await alice.delete_media(media["id"])
    assert await alice.media_usage() == {"used_bytes": 0, "quota_bytes": quota, "items": 0}
    again = await alice.upload_image(images.quota_photo)
    assert (await alice.media_usage())["used_bytes"] == again["bytes"]


async def test_variants_outgrowing_the_quota_are_refused(
    tight_node: ServerProcess, images: Images, people: MakeUser
) -> None:
    """A 170 kB upload (allowed in) whose variants exceed the quota is 403; nothing is counted."""
    alice = await people(tight_node, "alice")
    assert_error(await upload(alice, images.oversized_photo), 403, "quota_exceeded")
    assert (await alice.media_usage())["used_bytes"] == 0
    assert (await alice.my_media())["media"] == []


def blob_files(node: ServerProcess) -> set[str]:
    """Names of the blobs a local store holds (its tmp directory aside)."""
    root = media_dir(node) / "blobs"
    return {p.name for p in root.rglob("*") if p.is_file() and len(p.name) == 64}


# server/media/service.py _upload_image stores every variant (put_bytes) before
# it calls _check_quota(user_id, total); when that refuses, nothing deletes them.
async def test_upload_refused_by_the_quota_leaves_no_blobs(
    tight_node: ServerProcess, people: MakeUser
) -> None:
    """The variants of an upload refused for the quota are not left in the blob store."""
    alice = await people(tight_node, "alice")
    before = blob_files(tight_node)
    # Fresh grain: no variant can already be in the store from another upload.
    assert_error(await upload(alice, oversized_photo()), 403, "quota_exceeded")
    assert blob_files(tight_node) == before


async def test_upload_burst_is_rate_limited_with_retry_after(
    tight_node: ServerProcess, people: MakeUser
) -> None:
    """Three uploads in a row succeed; the fourth is 429 rate_limited with a Retry-After."""
    alice = await people(tight_node, "alice")
    for _ in range(TIGHT_BURST):
        assert (await upload(alice, unique_image())).status_code == 201
    limited = await upload(alice, unique_image())
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 10  # one upload per 10 s
    assert (await alice.media_usage())["items"] == TIGHT_BURST
    # Another user has a burst of their own.
    bob = await people(tight_node, "bob")
    assert (await upload(bob, unique_image())).status_code == 201


def pages_of(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


# server/media/service.py list_mine: `.exclude(created_at=c, id__gte=cid)` is
# rendered by Tortoise as `NOT created_at = c AND NOT id >= cid`, so the next
# page drops every older upload whose (random) id sorts above the cursor's.
async def test_my_media_pages_newest_first(sqlite_node: ServerProcess, people: MakeUser) -> None:
    """Five uploads, pages of two: 2 + 2 + 1, newest first, each exactly once (pages of 1 too)."""
    alice = await people(sqlite_node, "alice")
    bob = await people(sqlite_node, "bob")
    uploaded = [(await alice.upload_image(unique_image()))["id"] for _ in range(5)]
    # Ids are random: make sure they are not already in upload order, or a cursor
    # that wrongly compares ids would go unnoticed (1 chance in 120 per five).
    while [uuid.UUID(i) for i in uploaded] == sorted(uuid.UUID(i) for i in uploaded):
        uploaded.append((await alice.upload_image(unique_image()))["id"])
    newest_first = uploaded[::-1]
    other = await bob.upload_image(unique_image())

    for size in (2, 1):
        pages: list[list[str]] = []
        before: str | None = None
        while len(pages) <= len(uploaded):
            page = await alice.my_media(limit=size, before=before)
            pages.append([m["id"] for m in page["media"]])
            assert all(m["owner_id"] == uid(alice) for m in page["media"])
            before = page["next_before"]
            if before is None:
                break
            assert before == pages[-1][-1]
        assert pages == pages_of(newest_first, size), size
    assert (await alice.my_media())["media"][0]["id"] == uploaded[-1]
    error = await refused(alice.my_media(before=other["id"]))
    assert (error.status, error.code) == (422, "invalid_request")  # not a cursor of hers


# -- encrypted attachments across the cluster -------------------------------------------------


async def _device(node: ServerProcess, name: str) -> ParleyClient:
    client = ParleyClient(node.url, device_name=name)
    await client.sign_in_with_ethereum(Account.create())
    await client.setup_device(name)
    await client.connect()
    return client


async def _next_envelope(client: ParleyClient, conversation_id: str) -> dict[str, Any]:
    while True:
        message = await client.next_message(timeout=15)
        if message["kind"] == "envelope" and message["conversation_id"] == conversation_id:
            return message


async def test_encrypted_attachment_crosses_nodes_and_stays_opaque(
    cluster: tuple[ServerProcess, ServerProcess], images: Images, people: MakeUser
) -> None:
    """A sends a JPEG on node 1, B opens it on node 2; the server holds only ciphertext."""
    node1, node2 = cluster
    alice = await _device(node1, "alice")
    bob = await _device(node2, "bob")
    carol = await people(node1, "carol")
    try:
        conversation = await alice.open_direct(uid(bob))
        assert conversation["mode"] == "encrypted"
        photo = images.small
        ack = await alice.send_attachment(
            conversation["id"], photo, content_type="image/jpeg", name="p.jpg", caption="hi"
        )
        message = await _next_envelope(bob, conversation["id"])
        assert message["id"] == ack["id"] and message["sender_id"] == uid(alice)
        payload = await bob.open_message(message)
        assert payload["type"] == "attachment" and payload["text"] == "hi"
        descriptor = payload["attachment"]
        assert descriptor["size"] == len(photo) and descriptor["name"] == "p.jpg"
        assert (descriptor["width"], descriptor["height"]) == (300, 200)
        assert await bob.download_attachment(descriptor) == photo

        thumbnail = await bob.download_attachment(descriptor, thumbnail=True)
        assert thumbnail[:4] == b"RIFF" and thumbnail[8:12] == b"WEBP"
        thumb = load(thumbnail)
        assert max(thumb.width, thumb.height) <= 320
        assert (thumb.width, thumb.height) == (
            descriptor["thumbnail"]["width"],
            descriptor["thumbnail"]["height"],
        )
        assert is_red(corners(thumb, inset=2)["top-left"])

        # What the server stores is the ciphertext the descriptor's hash names.
        stored = await bob.download_media(descriptor["media_id"], "blob")
        assert hashlib.sha256(stored).digest() == base64.b64decode(descriptor["sha256"])
        assert len(stored) == len(photo) + 28  # nonce and tag
        assert photo[:100] not in stored and photo[-100:] not in stored
        metadata = await bob.media(descriptor["media_id"])
        assert (metadata["kind"], metadata["format"], metadata["variants"][0]["name"]) == (
            "blob",
            "",
            "blob",
        )
        await assert_blob_hidden(carol, descriptor["media_id"])
        await assert_blob_hidden(carol, descriptor["thumbnail"]["media_id"])

        # Blobs only go to encrypted conversations one is a member of.
        plain = await alice.open_direct(uid(bob), mode="plaintext")
        response = await raw(
            alice, "POST", "/v1/media/blobs", params={"conversation_id": plain["id"]}, content=b"x"
        )
        assert_error(response, 422, "wrong_mode")
        response = await raw(
            carol,
            "POST",
            "/v1/media/blobs",
            params={"conversation_id": conversation["id"]},
            content=b"x" * 64,
        )
        assert_error(response, 404, "conversation_not_found")
        # A blob's id is not an image: it cannot be posted in the clear.
        error = await refused(alice.send_image(plain["id"], descriptor["media_id"]))
        assert error.code == "media_not_image"

        # A file that is not an image travels the same way, without a thumbnail.
        document = b"%PDF-1.7\n" + random.randbytes(3000)
        file_descriptor = await alice.upload_attachment(
            conversation["id"], document, content_type="application/pdf", name="d.pdf"
        )
        assert "thumbnail" not in file_descriptor and "width" not in file_descriptor
        assert await bob.download_attachment(file_descriptor) == document
    finally:
        await alice.close()
        await bob.close()


async def assert_blob_hidden(client: ParleyClient, media_id: str) -> None:
    assert_error(await raw(client, "GET", f"/v1/media/{media_id}"), 404, "media_not_found")
    assert_error(await raw(client, "GET", f"/v1/media/{media_id}/blob"), 404, "media_not_found")


# -- S3 -----------------------------------------------------------------------------------


async def test_s3_store_serves_uploads_with_ranges_and_reports_ready(
    s3_node: ServerProcess, moto_endpoint: str, images: Images, people: MakeUser
) -> None:
    """With PARLEY_MEDIA_STORE=s3 the variants land in the bucket and download with Range."""
    async with httpx.AsyncClient(base_url=s3_node.url) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["media"] == "ok"

    alice = await people(s3_node, "alice")
    media = await alice.upload_image(images.small)
    assert [v["name"] for v in media["variants"]] == VARIANT_NAMES
    body = await alice.download_media(media["id"], "full.jpg")
    image = load(body)
    assert (image.width, image.height) == (300, 200) and is_red(corners(image)["top-left"])
    part = await raw(
        alice, "GET", f"/v1/media/{media['id']}/full.jpg", headers={"Range": "bytes=5-14"}
    )
    assert part.status_code == 206 and part.content == body[5:15]
    assert part.headers["content-range"] == f"bytes 5-14/{len(body)}"
    assert (
        await alice.download_media(
            media["id"], "full.jpg", byte_range=(len(body) - 3, len(body) - 1)
        )
        == body[-3:]
    )

    key = hashlib.sha256(body).hexdigest()
    bucket = s3_client(moto_endpoint)
    stored = await asyncio.to_thread(bucket.get_object, Bucket=S3_BUCKET, Key=key)
    assert stored["Body"].read() == body
    assert not list((media_dir(s3_node) / "blobs").glob("**/*" + key))

    await alice.delete_media(media["id"])
    listing = await asyncio.to_thread(bucket.list_objects_v2, Bucket=S3_BUCKET)
    assert key not in {o["Key"] for o in listing.get("Contents", [])}
