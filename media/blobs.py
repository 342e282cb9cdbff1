"""Content-addressed blob store: image variants and encrypted attachments.

A blob's key is the lowercase hex SHA-256 of its bytes, so storing the same
content twice stores it once and a key names exactly one content. One protocol,
two backends: ``LocalBlobStore`` (the embedded default, files under the media
directory) and ``S3BlobStore`` (an S3-compatible bucket shared by every node).
The contract suite in tests/integration/test_blob_store.py runs against both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import anyio
import anyio.to_thread
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError as BotoHTTPClientError

from config.errors import NotFoundError, UnavailableError
from config.settings import MediaSettings

# Largest piece ``read`` yields, and the piece size for hashing and copying.
READ_CHUNK = 256 * 1024
_HASH_CHUNK = 1024 * 1024
# Files above this go to S3 as a multipart upload, in parts of this size
# (S3 wants parts of at least 5 MiB and at most 10,000 of them).
MULTIPART_THRESHOLD = 16 * 1024 * 1024
_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    key: str  # lowercase hex SHA-256 of the bytes
    size: int


class BlobNotFoundError(NotFoundError):
    code = "media_not_found"


class BlobStore(Protocol):
    """Where blobs live, addressed by the SHA-256 of their content."""

    async def put_file(self, path: Path) -> StoredBlob:
        """Store a copy of the file at ``path``; the caller still owns (and deletes) it."""

    async def put_bytes(self, data: bytes) -> StoredBlob:
        """Store ``data``; storing content that is already there is a no-op."""

    async def size(self, key: str) -> int | None:
        """The blob's size in bytes, or None when it does not exist."""

    def read(self, key: str, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, start + length)`` in chunks of at most ``READ_CHUNK``.

        A range past the end is cut short. ``BlobNotFoundError`` is raised on
        the first iteration when the blob does not exist.
        """

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing one is fine."""

    async def ping(self) -> None:
        """Raise ``UnavailableError`` when the store cannot be used."""

    async def close(self) -> None: ...


def build_blob_store(settings: MediaSettings) -> BlobStore:
    """The store ``settings.store`` names; S3 opens its client on first use."""
    if settings.store == "s3":
        secret = settings.s3_secret_access_key
        return S3BlobStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            prefix=settings.s3_prefix,
        )
    return LocalBlobStore(settings.dir / "blobs")


def check_key(key: str) -> str:
    """Return ``key`` if it is a content address; anything else (a path) is a ValueError."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a blob key: {key[:80]!r}")
    return key


def _check_range(start: int, length: int | None) -> None:
    if start < 0 or (length is not None and length < 0):
        raise ValueError(f"bad blob range: start={start}, length={length}")


def _hash_file(path: Path) -> StoredBlob:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return StoredBlob(digest.hexdigest(), size)


def _not_found(key: str) -> BlobNotFoundError:
    return BlobNotFoundError(f"blob {key} does not exist")


class LocalBlobStore:
    """Blobs as files ``root/ab/cd/<key>``, written to ``root/tmp`` then renamed into place.

    The rename is atomic, so a reader sees a whole blob or none. Directories are
    0700 and files 0600: the blobs belong to the server's user alone.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    async def put_file(self, path: Path) -> StoredBlob:
        return await anyio.to_thread.run_sync(self._put_file, path)

    async def put_bytes(self, data: bytes) -> StoredBlob:
        return await anyio.to_thread.run_sync(self._put_bytes, data)

    async def size(self, key: str) -> int | None:
        path = self._path(key)
        try:
            stat = await anyio.to_thread.run_sync(path.stat)
        except FileNotFoundError:
            return None
        return stat.st_size

    def read(self, key: str, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        _check_range(start, length)
        return self._stream(self._path(key), start, length)

    async def _stream(self, path: Path, start: int, length: int | None) -> AsyncIterator[bytes]:
        try:
            file = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise _not_found(path.name) from None
        async with file:
            await file.seek(start)
            left = length
            while left is None or left > 0:
                chunk = await file.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            await anyio.to_thread.run_sync(path.unlink)

    async def ping(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._prepare)
        except OSError as exc:
            raise UnavailableError(f"blob directory {self.root} is not usable: {exc}") from exc

    async def close(self) -> None:
        pass

    # The methods below run in a worker thread.

    def _prepare(self) -> None:
        for directory in (self.root, self._tmp):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(self._tmp, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write to {self._tmp}")

    def _put_file(self, source: Path) -> StoredBlob:
        with self._temp_file() as (temp, file), source.open("rb") as src:
            digest = hashlib.sha256()
            size = 0
            while chunk := src.read(_HASH_CHUNK):
                digest.update(chunk)
                file.write(chunk)
                size += len(chunk)
            return self._commit(temp, file, StoredBlob(digest.hexdigest(), size))

    def _put_bytes(self, data: bytes) -> StoredBlob:
        with self._temp_file() as (temp, file):
            file.write(data)
            return self._commit(temp, file, StoredBlob(hashlib.sha256(data).hexdigest(), len(data)))

    @contextlib.contextmanager
    def _temp_file(self) -> Iterator[tuple[Path, BinaryIO]]:
        self._prepare()
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")  # mode 0600
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                yield temp, file
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _commit(self, temp: Path, file: BinaryIO, blob: StoredBlob) -> StoredBlob:
        final = self._path(blob.key)
        if final.exists():
            temp.unlink()  # same key, same bytes: already stored
            return blob
        # A crash after the rename must not leave a short file under a key that
        # later puts would then trust, so the bytes reach the disk first.
        file.flush()
        os.fsync(file.fileno())
        final.parent.parent.mkdir(mode=0o700, exist_ok=True)
        final.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(temp, final)
        return blob


class S3BlobStore:
    """Blobs as objects ``<prefix><key>`` in an S3 (or S3-compatible) bucket.

    One client is kept open from ``open()`` (or first use) until ``close()``.
    Operators create the bucket; ``ping`` reports a missing one, and
    ``ensure_bucket`` exists for tests and first-time set-up scripts.
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint_url or f"AWS S3 ({region})"
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        # Fail fast when the endpoint is down (a health check must answer in
        # seconds), but give a slow body time to arrive.
        config: dict[str, Any] = {
            "connect_timeout": 3,
            "read_timeout": 30,
            "retries": {"max_attempts": 2, "mode": "standard"},
            "warm_up_loader_caches": True,  # load botocore's JSON models off the loop
        }
        if endpoint_url is not None:
            # S3-compatible servers (MinIO, Ceph, R2, moto) answer on one host,
            # not per-bucket subdomains, and many reject the CRC checksums
            # botocore >= 1.36 sends by default.
            config["s3"] = {"addressing_style": "path"}
            config["request_checksum_calculation"] = "when_required"
            config["response_checksum_validation"] = "when_required"
        self._config = AioConfig(**config)
        self._stack: AsyncExitStack | None = None
        self._s3: Any = None
        self._open_lock = anyio.Lock()

    async def open(self) -> None:
        async with self._open_lock:
            if self._s3 is not None:
                return
            stack = AsyncExitStack()
            client = get_session().create_client("s3", config=self._config, **self._client_args)
            with self._errors():
                self._s3 = await stack.enter_async_context(client)
            self._stack = stack

    async def close(self) -> None:
        stack, self._stack, self._s3 = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def _client(self) -> Any:
        if self._s3 is None:
            await self.open()
        return self._s3

    def _object(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def put_file(self, path: Path) -> StoredBlob:
        blob = await anyio.to_thread.run_sync(_hash_file, path)
        if await self.size(blob.key) is None:
            if blob.size > MULTIPART_THRESHOLD:
                await self._put_multipart(path, blob.key)
            else:
                await self._put_object(blob.key, await anyio.Path(path).read_bytes())
        return blob

    async def put_bytes(self, data: bytes) -> StoredBlob:
        digest = await anyio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
        blob = StoredBlob(digest, len(data))
        if await self.size(blob.key) is None:
            await self._put_object(blob.key, data)
        return blob

    async def _put_object(self, key: str, data: bytes) -> None:
        s3 = await self._client()
        with self._errors():
            await s3.put_object(Bucket=self.bucket, Key=self._object(key), Body=data)

    async def _put_multipart(self, path: Path, key: str) -> None:
        s3 = await self._client()
        name = self._object(key)
        with self._errors():
            upload = await s3.create_multipart_upload(Bucket=self.bucket, Key=name)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            with self._errors():
                async with await anyio.open_file(path, "rb") as file:
                    while body := await file.read(MULTIPART_THRESHOLD):
                        number = len(parts) + 1
                        part = await s3.upload_part(
                            Bucket=self.bucket,
                            Key=name,
                            UploadId=upload_id,
                            PartNumber=number,
                            Body=body,
                        )
                        parts.append({"ETag": part["ETag"], "PartNumber": number})
                await s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            # Unfinished parts are billed until aborted.
            with anyio.move_on_after(10, shield=True), contextlib.suppress(Exception):
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            raise

    async def size(self, key: str) -> int | None:
        name = self._object(key)
        s3 = await self._client()
        try:
            with self._errors():
                head = await s3.head_object(Bucket=self.bucket, Key=name)
        except BlobNotFoundError:
            return None
        return int(head["ContentLength"])

    def read(self, key: str, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        _check_range(start, length)
        return self._stream(self._object(key), start, length)

    async def _stream(self, name: str, start: int, length: int | None) -> AsyncIterator[bytes]:
        s3 = await self._client()
        if length == 0:
            # S3 has no empty range; only the blob's existence is in question.
            with self._errors():
                await s3.head_object(Bucket=self.bucket, Key=name)
            return
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            args["Range"] = f"bytes={start}-{end}"
        try:
            with self._errors():
                response = await s3.get_object(**args)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return  # the range starts at or past the end
            raise
        with self._errors():
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(READ_CHUNK):
                    yield chunk

    async def delete(self, key: str) -> None:
        name = self._object(key)
        s3 = await self._client()
        with self._errors():
            await s3.delete_object(Bucket=self.bucket, Key=name)

    async def ping(self) -> None:
        s3 = await self._client()
        try:
            with self._errors():
                await s3.head_bucket(Bucket=self.bucket)
        except BlobNotFoundError:
            raise UnavailableError(
                f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}; create it first"
            ) from None

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (tests and set-up scripts; Parley never does)."""
        s3 = await self._client()
        args: dict[str, Any] = {"Bucket": self.bucket}
        region = self._client_args["region_name"]
        if region != "us-east-1":  # the one region S3 refuses as a location constraint
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            with self._errors():
                await s3.create_bucket(**args)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate botocore's failures into Parley's; other client errors pass through."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in {"NoSuchKey", "NotFound", "404"}:  # HEAD answers carry no code
                raise BlobNotFoundError("blob does not exist") from exc
            if code == "NoSuchBucket":
                raise UnavailableError(
                    f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}"
                ) from exc
            if status == 403 or status >= 500:
                raise UnavailableError(
                    f"S3 at {self.endpoint} refused the request: {code or status}"
                ) from exc
            raise
        except (BotoConnectionError, BotoHTTPClientError) as exc:
            raise UnavailableError(f"S3 endpoint {self.endpoint} is unreachable: {exc}") from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise UnavailableError(f"no usable S3 credentials for {self.endpoint}") from exc
