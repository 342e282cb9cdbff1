"""Media: uploads, who may fetch what, quotas, and use in chats and avatars.

An image upload is spooled to disk, sniffed, processed in the worker pool and
its variants stored by content address; the original is dropped (it carries
the camera's metadata). An encrypted blob is stored as it came, for one
encrypted conversation whose members may fetch it.

Who may fetch a media item: its owner; anyone signed in once it is an avatar;
members of a conversation it was posted in (an image message) or uploaded for
(a blob). Everyone else gets the same 404 as for an id that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from starlette.requests import ClientDisconnect
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from config.errors import (
    InvalidRequestError,
    NotFoundError,
    ParleyError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)
from config.settings import MediaSettings
from media.blobs import BlobStore
from media.pipeline import Spec, UnsupportedImageError, sniff
from media.pool import MediaPool
from media.spool import Spooled, spool
from server.chats.access import Roster, RosterCache, parse_id
from server.media.schemas import MediaOut, MediaPage, UsageOut, VariantOut
from server.metrics import MediaMetrics
from storage import sql
from storage.kv import KeyValueStore
from storage.models import Conversation, Media, MediaUse, MediaVariant, User

VARIANT_SIZES = ("full", "640", "320", "160")
_EXTENSIONS = ("webp", "jpg")


class MediaNotFoundError(NotFoundError):
    code = "media_not_found"


class QuotaExceededError(PermissionDeniedError):
    code = "quota_exceeded"


def variant_name(requested: str) -> str:
    """``full`` -> ``full.webp``; ``640.jpg`` and ``blob`` as they are; else 404."""
    size, _, ext = requested.partition(".")
    if requested == "blob" or (size in VARIANT_SIZES and ext in _EXTENSIONS):
        return requested
    if size in VARIANT_SIZES and not ext:
        return f"{size}.webp"
    names = ", ".join(f"{s}[.webp|.jpg]" for s in VARIANT_SIZES)
    raise MediaNotFoundError(f"no variant {requested[:40]!r}; images have {names}, blobs `blob`")


def media_out(media: Media, variants: list[MediaVariant]) -> MediaOut:
    return MediaOut(
        id=str(media.id),
        kind=media.kind,  # type: ignore[arg-type]
        owner_id=str(media.owner_id),
        format=media.source_format,
        width=media.width,
        height=media.height,
        animated=media.animated,
        placeholder=media.placeholder,
        bytes=media.bytes,
        public=media.public,
        created_at=media.created_at,
        variants=[
            VariantOut(
                name=v.name,
                content_type=v.content_type,
                width=v.width,
                height=v.height,
                bytes=v.bytes,
                url=f"/v1/media/{media.id}/{v.name}",
            )
            for v in sorted(variants, key=_variant_order)
        ],
    )


def _variant_order(variant: MediaVariant) -> tuple[int, bool]:
    """Largest first, WebP before its JPEG fallback."""
    size, _, ext = variant.name.partition(".")
    return (VARIANT_SIZES.index(size) if size in VARIANT_SIZES else 0, ext != "webp")


async def _owned_image(user_id: str, media_id: str, field: str) -> Media:
    media = await Media.get_or_none(id=parse_id(media_id, field))
    if media is None or str(media.owner_id) != user_id:
        raise InvalidRequestError(
            f"{field}: not an image you uploaded (upload it with POST /v1/media first)",
            code="media_not_yours",
        )
    if media.kind != "image":
        raise InvalidRequestError(
            f"{field}: an encrypted blob; its id belongs inside the envelope",
            code="media_not_image",
        )
    return media


async def attach_to_conversation(user_id: str, media_id: str, conversation_id: str) -> None:
    """An image message: the sender's own image, now visible to the conversation's members."""
    media = await _owned_image(user_id, media_id, "body.media_id")
    if await MediaUse.exists(media_id=media.id, conversation_id=conversation_id):
        return
    with contextlib.suppress(IntegrityError):  # posted there at the same moment
        await MediaUse.create(media_id=media.id, conversation_id=conversation_id)


async def make_avatar(user_id: str, media_id: str, field: str = "media_id") -> None:
    """An avatar (of the user or a group): the owner's image, now visible to everyone signed in."""
    media = await _owned_image(user_id, media_id, field)
    if not media.public:
        await Media.filter(id=media.id).update(public=True)


async def unpublish_unless_avatar(media_id: uuid.UUID) -> None:
    """A former avatar goes back to owner-and-conversations only, unless still an avatar."""
    if not (
        await User.exists(avatar_media_id=media_id)
        or await Conversation.exists(avatar_media_id=media_id)
    ):
        await Media.filter(id=media_id).update(public=False)


class MediaService:
    def __init__(
        self,
        settings: MediaSettings,
        store: BlobStore,
        pool: MediaPool,
        kv: KeyValueStore,
        rosters: RosterCache,
        metrics: MediaMetrics,
    ) -> None:
        self._settings = settings
        self._store = store
        self._pool = pool
        self._kv = kv
        self._rosters = rosters
        self._metrics = metrics
        metrics.in_flight.set_function(lambda: pool.in_flight)
        self._spec = Spec(max_pixels=settings.max_pixels)
        self._tmp = Path(settings.dir) / "tmp"

    # -- uploads ----------------------------------------------------------------

    async def upload_image(
        self, user_id: str, body: AsyncIterator[bytes], declared: int | None
    ) -> MediaOut:
        with self._counted("image"):
            return await self._upload_image(user_id, body, declared)

    async def upload_blob(
        self, user_id: str, conversation_id: str, body: AsyncIterator[bytes], declared: int | None
    ) -> MediaOut:
        with self._counted("blob"):
            return await self._upload_blob(user_id, conversation_id, body, declared)

    @contextlib.contextmanager
    def _counted(self, kind: str) -> Iterator[None]:
        try:
            yield
        except ParleyError as exc:
            self._metrics.uploads.labels(kind, exc.code).inc()
            raise
        except Exception:
            self._metrics.uploads.labels(kind, "internal_error").inc()
            raise
        self._metrics.uploads.labels(kind, "ok").inc()

    async def _upload_image(
        self, user_id: str, body: AsyncIterator[bytes], declared: int | None
    ) -> MediaOut:
        await self._admit(user_id, declared, self._settings.max_upload_bytes)
        upload = await self._spool(body, self._settings.max_upload_bytes)
        try:
            fmt = self._sniff(upload)
            with self._metrics.process_seconds.time():
                processed = await self._pool.process(upload.path, fmt, self._spec)
        finally:
            await asyncio.to_thread(upload.remove)
        # Small images make identical variants (full = 640 = 320): stored and
        # counted once.
        total = sum(len(data) for data in {v.data for v in processed.variants})
        await self._check_quota(user_id, total)
        stored = await asyncio.gather(*(self._store.put_bytes(v.data) for v in processed.variants))
        self._metrics.stored_bytes.inc(total)
        media = Media(
            owner_id=user_id,
            kind="image",
            source_format=fmt,
            width=processed.width,
            height=processed.height,
            animated=processed.animated,
            placeholder=processed.placeholder,
            bytes=total,
        )
        variants = [
            MediaVariant(
                media_id=media.id,
                name=v.name,
                key=blob.key,
                content_type=v.content_type,
                width=v.width,
                height=v.height,
                bytes=blob.size,
            )
            for v, blob in zip(processed.variants, stored, strict=True)
        ]
        async with in_transaction():
            await media.save()
            await MediaVariant.bulk_create(variants)
        # A delete of the same content may have removed a blob we skipped
        # storing again (content addressing); put back whatever is gone.
        for variant, blob in zip(processed.variants, stored, strict=True):
            if await self._store.size(blob.key) is None:
                await self._store.put_bytes(variant.data)
        return media_out(media, variants)

    async def _upload_blob(
        self, user_id: str, conversation_id: str, body: AsyncIterator[bytes], declared: int | None
    ) -> MediaOut:
        roster = await self._member(user_id, conversation_id)
        if roster.mode != "encrypted":
            raise InvalidRequestError(
                "conversation_id: blobs are for encrypted conversations; "
                "upload images to plaintext ones with POST /v1/media",
                code="wrong_mode",
            )
        await self._admit(user_id, declared, self._settings.max_blob_bytes)
        upload = await self._spool(body, self._settings.max_blob_bytes)
        try:
            if upload.size == 0:
                raise InvalidRequestError(
                    "the body is empty; send the encrypted bytes", code="empty_upload"
                )
            await self._check_quota(user_id, upload.size)
            blob = await self._store.put_file(upload.path)
            self._metrics.stored_bytes.inc(blob.size)
        finally:
            await asyncio.to_thread(upload.remove)
        media = Media(owner_id=user_id, kind="blob", bytes=blob.size)
        variant = MediaVariant(
            media_id=media.id,
            name="blob",
            key=blob.key,
            content_type="application/octet-stream",
            bytes=blob.size,
        )
        async with in_transaction():
            await media.save()
            await variant.save()
            await MediaUse.create(media_id=media.id, conversation_id=roster.conversation_id)
        return media_out(media, [variant])

    async def _spool(self, body: AsyncIterator[bytes], limit: int) -> Spooled:
        try:
            return await spool(body, self._tmp, limit)
        except ClientDisconnect:
            # Nobody is left to answer; this keeps it out of the error log.
            raise ParleyError(
                "the client went away before the upload finished",
                code="upload_interrupted",
                status=400,
            ) from None

    async def _admit(self, user_id: str, declared: int | None, limit: int) -> None:
        """Refuse early, before a byte is read: rate, declared size, a full quota."""
        wait = await self._take(user_id)
        if wait > 0:
            raise RateLimitedError(
                f"too many uploads; at most {self._settings.uploads_per_minute:g} a minute",
                retry_after=max(1, math.ceil(wait)),
            )
        if declared is not None and declared > limit:
            raise PayloadTooLargeError(
                f"upload of {declared:,} bytes is larger than the limit of {limit:,}",
                code="upload_too_large",
            )
        await self._check_quota(user_id, 0 if declared is None else declared)

    async def _take(self, user_id: str) -> float:
        try:
            return await self._kv.take(
                f"rl:media:{user_id}",
                rate=self._settings.uploads_per_minute / 60,
                burst=self._settings.uploads_burst,
            )
        except UnavailableError:
            return 0.0  # the byte and quota limits still hold

    def _sniff(self, upload: Spooled) -> str:
        if upload.size == 0:
            raise InvalidRequestError(
                "the body is empty; send the image bytes", code="empty_upload"
            )
        fmt = sniff(upload.head)
        if fmt is None:
            raise UnsupportedImageError(
                "not an image this server reads; send JPEG, PNG, WebP, GIF, HEIC or AVIF "
                "(the type is read from the bytes, not the name or Content-Type)"
            )
        return fmt

    async def _check_quota(self, user_id: str, adding: int) -> None:
        used, _ = await self._usage(user_id)
        quota = self._settings.quota_bytes
        if used + adding > quota:
            raise QuotaExceededError(
                f"storage quota: {used:,} of {quota:,} bytes used, this needs {adding:,} more; "
                "delete media you no longer need (DELETE /v1/media/{id})"
            )

    async def _usage(self, user_id: str) -> tuple[int, int]:
        row = await sql.fetch_one(
            "SELECT COALESCE(SUM(bytes), 0) AS used, COUNT(*) AS items FROM media "
            "WHERE owner_id = ?",
            [user_id],
        )
        assert row is not None
        return int(row["used"]), int(row["items"])

    async def usage(self, user_id: str) -> UsageOut:
        used, items = await self._usage(user_id)
        return UsageOut(used_bytes=used, quota_bytes=self._settings.quota_bytes, items=items)

    # -- reading ----------------------------------------------------------------

    async def get(self, user_id: str, media_id: str) -> MediaOut:
        media = await self._readable(user_id, media_id)
        return media_out(media, await MediaVariant.filter(media_id=media.id))

    async def variant(self, user_id: str, media_id: str, requested: str) -> MediaVariant:
        name = variant_name(requested)
        media = await self._readable(user_id, media_id)
        variant = await MediaVariant.get_or_none(media_id=media.id, name=name)
        if variant is None:
            raise MediaNotFoundError(f"media {media_id} has no variant {name}")
        return variant

    def read(self, key: str, start: int, length: int) -> AsyncIterator[bytes]:
        return self._store.read(key, start, length)

    async def list_mine(self, user_id: str, before: str | None, limit: int) -> MediaPage:
        query = Media.filter(owner_id=user_id)
        if before is not None:
            cursor = await Media.get_or_none(id=parse_id(before, "before"), owner_id=user_id)
            if cursor is None:
                raise InvalidRequestError("before: not one of your media ids")
            query = query.filter(
                Q(created_at__lt=cursor.created_at)
                | Q(created_at=cursor.created_at, id__lt=cursor.id)
            )
        rows = await query.order_by("-created_at", "-id").limit(limit + 1)
        page = rows[:limit]
        variants: dict[uuid.UUID, list[MediaVariant]] = {m.id: [] for m in page}
        for v in await MediaVariant.filter(media_id__in=list(variants)):
            variants[v.media_id].append(v)
        return MediaPage(
            media=[media_out(m, variants[m.id]) for m in page],
            next_before=str(page[-1].id) if len(rows) > limit else None,
        )

    async def _readable(self, user_id: str, media_id: str) -> Media:
        media = await Media.get_or_none(id=parse_id(media_id, "media_id"))
        if media is None or not (
            str(media.owner_id) == user_id
            or media.public
            or await MediaUse.filter(
                media_id=media.id, conversation__members__user_id=user_id
            ).exists()
        ):
            raise MediaNotFoundError("no such media, or you may not see it")
        return media

    async def _member(self, user_id: str, conversation_id: str) -> Roster:
        return await self._rosters.member(
            user_id, str(parse_id(conversation_id, "conversation_id"))
        )

    # -- deleting ---------------------------------------------------------------

    async def delete(self, user_id: str, media_id: str) -> None:
        """The owner's delete: rows go, avatars using it are cleared, unshared blobs removed."""
        media = await Media.get_or_none(id=parse_id(media_id, "media_id"))
        if media is None or str(media.owner_id) != user_id:
            raise MediaNotFoundError("no such media of yours")
        keys = set(await MediaVariant.filter(media_id=media.id).values_list("key", flat=True))
        async with in_transaction():
            await User.filter(avatar_media_id=media.id).update(avatar_media_id=None)
            await Conversation.filter(avatar_media_id=media.id).update(avatar_media_id=None)
            await Media.filter(id=media.id).delete()
        shared = set(await MediaVariant.filter(key__in=list(keys)).values_list("key", flat=True))
        for key in keys - shared:
            await self._store.delete(str(key))

    async def set_avatar(self, user_id: str, media_id: str | None) -> None:
        if media_id is not None:
            await make_avatar(user_id, media_id)
        user = await User.get(id=user_id)
        previous = user.avatar_media_id
        await User.filter(id=user_id).update(
            avatar_media_id=None if media_id is None else uuid.UUID(media_id)
        )
        if previous is not None and str(previous) != media_id:
            await unpublish_unless_avatar(previous)


def parse_byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of one ``bytes=`` range; None for the whole; ValueError if unsatisfiable.

    Several ranges, or a unit other than bytes, are answered with the whole
    body (RFC 9110 lets a server ignore Range).
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first or last) or not all(map(_digits, (first, last))):
        return None  # not a byte range at all: ignore it
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise ValueError("empty suffix range")
        start = max(0, size - suffix)
        return start, size - start
    start = int(first)
    end = int(last) if last else max(size - 1, start)
    if end < start:
        return None
    if start >= size:
        raise ValueError("range starts past the end")
    end = min(end, size - 1)
    return start, end - start + 1


def _digits(text: str) -> bool:
    """Empty, or ASCII digits only (``int()`` would also take "²", "٣" and "1_0")."""
    return text == "" or (text.isascii() and text.isdigit())
