"""The blob store contract, run against the local directory and S3 alike.

S3 is moto's server mode on loopback: no S3 server installs on the dev machine,
and moto speaks the real HTTP protocol, so aiobotocore's whole stack is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from config.errors import UnavailableError
from config.settings import MediaSettings
from media.blobs import (
    MULTIPART_THRESHOLD,
    READ_CHUNK,
    BlobNotFoundError,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    build_blob_store,
)

_MISSING = "0" * 64
_BAD_KEYS = ["../etc/passwd", "A" * 64, "ab" * 31, "ab" * 32 + "/", f"../{'a' * 61}"]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """An S3 endpoint served by moto on a free loopback port for this module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _s3_settings(endpoint: str, bucket: str) -> MediaSettings:
    return MediaSettings(
        store="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=bucket,
        s3_access_key_id="test",
        s3_secret_access_key=SecretStr("test"),
        s3_prefix="blobs/",
    )


@pytest.fixture(params=["local", "s3"])
async def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """A blob store: files under a fresh directory, or a fresh bucket on moto."""
    if request.param == "local":
        store = build_blob_store(MediaSettings(dir=tmp_path / "media"))
    else:
        moto_url = request.getfixturevalue("moto_url")
        store = build_blob_store(_s3_settings(moto_url, f"parley-{uuid.uuid4().hex[:12]}"))
        assert isinstance(store, S3BlobStore)
        await store.ensure_bucket()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(scope="module")
def big_data() -> bytes:
    """Enough random bytes to need a multipart upload (two parts) on S3."""
    return os.urandom(MULTIPART_THRESHOLD + 4 * 1024 * 1024)


async def _read(store: BlobStore, key: str, start: int = 0, length: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, length)])


async def test_put_bytes_round_trips(blob_store: BlobStore) -> None:
    """put_bytes returns the SHA-256 key and size, and read gives the bytes back."""
    data = b"hello, parley"
    blob = await blob_store.put_bytes(data)
    assert blob.key == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data)
    assert await blob_store.size(blob.key) == len(data)
    assert await _read(blob_store, blob.key) == data


async def test_put_file_round_trips_and_leaves_the_file(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    """put_file stores a copy under the content key; the caller's file stays put."""
    data = os.urandom(READ_CHUNK * 3 + 17)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    blob = await blob_store.put_file(source)
    assert blob.key == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data)
    assert source.read_bytes() == data
    chunks = [chunk async for chunk in blob_store.read(blob.key)]
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= READ_CHUNK for chunk in chunks)


async def test_same_content_is_stored_once(blob_store: BlobStore, tmp_path: Path) -> None:
    """Bytes and a file with the same content get the same key and one stored blob."""
    data = b"same content"
    source = tmp_path / "same.bin"
    source.write_bytes(data)
    first = await blob_store.put_bytes(data)
    second = await blob_store.put_file(source)
    third = await blob_store.put_bytes(data)
    assert first == second == third
    await blob_store.delete(first.key)
    assert await blob_store.size(first.key) is None, "one delete removes the one copy"


async def test_concurrent_puts_of_one_content(blob_store: BlobStore) -> None:
    """Five concurrent puts of the same bytes all succeed with the same key."""
    data = os.urandom(100_000)
    blobs = await asyncio.gather(*(blob_store.put_bytes(data) for _ in range(5)))
    assert len(set(blobs)) == 1
    assert await _read(blob_store, blobs[0].key) == data


async def test_ranges(blob_store: BlobStore) -> None:
    """Reads honour start and length, cut short at the end, and end empty past it."""
    data = bytes(range(256)) * 4
    key = (await blob_store.put_bytes(data)).key
    assert await _read(blob_store, key, 1000) == data[1000:]
    assert await _read(blob_store, key, 10, 20) == data[10:30]
    assert await _read(blob_store, key, 1000, 100) == data[1000:]
    assert await _read(blob_store, key, len(data) - 1, 1) == data[-1:]
    assert await _read(blob_store, key, len(data) - 1) == data[-1:]
    assert await _read(blob_store, key, 0, 0) == b""
    assert await _read(blob_store, key, len(data)) == b""
    assert await _read(blob_store, key, len(data) + 5, 3) == b""


async def test_empty_blob(blob_store: BlobStore) -> None:
    """An empty blob has size 0 and reads back empty, whole or ranged."""
    blob = await blob_store.put_bytes(b"")
    assert blob.key == hashlib.sha256(b"").hexdigest()
    assert await blob_store.size(blob.key) == 0
    assert await _read(blob_store, blob.key) == b""
    assert await _read(blob_store, blob.key, 0, 10) == b""


async def test_missing_blob(blob_store: BlobStore) -> None:
    """A missing blob has no size, and reading it raises BlobNotFoundError (a 404)."""
    assert await blob_store.size(_MISSING) is None
    with pytest.raises(BlobNotFoundError) as caught:
        await _read(blob_store, _MISSING)
    assert caught.value.status == 404
    with pytest.raises(BlobNotFoundError):
        await _read(blob_store, _MISSING, 5, 0)


async def test_delete(blob_store: BlobStore) -> None:
    """A deleted blob is gone; deleting a missing one is fine."""
    key = (await blob_store.put_bytes(b"to delete")).key
    await blob_store.delete(key)
    assert await blob_store.size(key) is None
    with pytest.raises(BlobNotFoundError):
        await _read(blob_store, key)
    await blob_store.delete(key)
    await blob_store.delete(_MISSING)


@pytest.mark.parametrize("key", _BAD_KEYS)
async def test_bad_keys_are_refused(blob_store: BlobStore, key: str) -> None:
    """Anything but 64 lowercase hex digits is a ValueError in every method."""
    with pytest.raises(ValueError):
        await blob_store.size(key)
    with pytest.raises(ValueError):
        blob_store.read(key)
    with pytest.raises(ValueError):
        await blob_store.delete(key)


async def test_bad_ranges_are_refused(blob_store: BlobStore) -> None:
    """A negative start or length is a ValueError."""
    with pytest.raises(ValueError):
        blob_store.read(_MISSING, -1)
    with pytest.raises(ValueError):
        blob_store.read(_MISSING, 0, -1)


async def test_large_blob_round_trips(
    blob_store: BlobStore, tmp_path: Path, big_data: bytes
) -> None:
    """A file over the multipart threshold round-trips whole and by range."""
    source = tmp_path / "big.bin"
    source.write_bytes(big_data)
    blob = await blob_store.put_file(source)
    assert blob.key == hashlib.sha256(big_data).hexdigest()
    assert await blob_store.size(blob.key) == len(big_data)
    assert await _read(blob_store, blob.key) == big_data
    middle = MULTIPART_THRESHOLD - 1000
    assert await _read(blob_store, blob.key, middle, 2000) == big_data[middle : middle + 2000]


async def test_ping(blob_store: BlobStore) -> None:
    """A usable store answers ping."""
    await blob_store.ping()


async def test_local_files_are_private_and_temp_files_go(tmp_path: Path) -> None:
    """Local blobs are 0600 in 0700 directories, and puts leave no temp files behind."""
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "upload.bin"
    source.write_bytes(b"file content")
    blobs = [await store.put_file(source), await store.put_bytes(b"bytes content")]
    blobs += await asyncio.gather(*(store.put_bytes(b"raced") for _ in range(5)))
    for blob in blobs:
        path = tmp_path / "blobs" / blob.key[:2] / blob.key[2:4] / blob.key
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for directory in (path.parent, path.parent.parent, store.root, store.root / "tmp"):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    with pytest.raises(FileNotFoundError):
        await store.put_file(tmp_path / "missing.bin")
    assert list((store.root / "tmp").iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_s3_unreachable_endpoint_is_unavailable() -> None:
    """Ping against a closed port raises UnavailableError naming the endpoint, promptly."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = build_blob_store(_s3_settings(endpoint, "parley-media"))
    began = time.monotonic()
    try:
        with pytest.raises(UnavailableError, match=endpoint):
            await store.ping()
        with pytest.raises(UnavailableError):
            await store.put_bytes(b"nowhere to go")
    finally:
        await store.close()
    assert time.monotonic() - began < 15


async def test_s3_missing_bucket_is_unavailable(moto_url: str) -> None:
    """Ping and puts against a bucket nobody created raise UnavailableError."""
    store = build_blob_store(_s3_settings(moto_url, f"absent-{uuid.uuid4().hex[:12]}"))
    try:
        with pytest.raises(UnavailableError, match="does not exist"):
            await store.ping()
        with pytest.raises(UnavailableError, match="does not exist"):
            await store.put_bytes(b"no bucket")
    finally:
        await store.close()
