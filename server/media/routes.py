"""HTTP door of media: upload, metadata, download with ranges, delete, avatars."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.responses import StreamingResponse

from config.errors import InvalidRequestError
from server.deps import PrincipalDep, ServicesDep
from server.errors import error_response
from server.media.schemas import AvatarRequest, MediaOut, MediaPage, UsageOut
from server.media.service import parse_byte_range
from server.openapi import errors

router = APIRouter(prefix="/v1", tags=["media"])

_BINARY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
# Variants never change (a new upload is a new id), so caches may keep them forever.
_CACHE = "private, max-age=31536000, immutable"
_UPLOAD_ERRORS = errors(
    (403, "Past your storage quota (`quota_exceeded`)"),
    (413, "Over the byte limit (`upload_too_large`) or the pixel limit (`image_too_large`)"),
    (429, "Too many uploads; retry after `Retry-After` (`rate_limited`)"),
)
_IMAGE_ERRORS = errors(
    (415, "Not JPEG, PNG, WebP, GIF, HEIC or AVIF, read from the bytes (`unsupported_media_type`)"),
    (
        422,
        "Truncated or undecodable (`corrupt_image`), a JPEG of over 100 scans "
        "(`image_too_complex`), or an empty body (`empty_upload`)",
    ),
    (503, "Image processing is at capacity (`media_busy`) or a backing service is down"),
)
_VARIANT_BYTES = {
    "description": "The variant's bytes (206 with `Content-Range` for a `Range` request)",
    "content": {
        kind: {"schema": {"type": "string", "format": "binary"}}
        for kind in ("image/webp", "image/jpeg", "application/octet-stream")
    },
}


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequestError("Content-Length: not a number") from None


@router.post(
    "/media",
    response_model=MediaOut,
    status_code=201,
    openapi_extra=_BINARY_BODY,
    responses={**_UPLOAD_ERRORS, **_IMAGE_ERRORS},
)
async def upload_image(
    request: Request, principal: PrincipalDep, services: ServicesDep
) -> MediaOut:
    """Upload an image as the raw request body (JPEG, PNG, WebP, GIF, HEIC, AVIF).

    The type is read from the bytes. The server keeps a Full HD variant and
    thumbnails at 640, 320 and 160 px, each in WebP and JPEG, with all
    metadata removed; the original is not kept. Use the id in an image
    message, as an avatar, or fetch the variants.
    """
    return await services.media.upload_image(
        principal.user_id, request.stream(), _declared_length(request)
    )


@router.post(
    "/media/blobs",
    response_model=MediaOut,
    status_code=201,
    openapi_extra=_BINARY_BODY,
    responses={**_UPLOAD_ERRORS, **errors((404, "No such conversation, or not yours"))},
)
async def upload_blob(
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    conversation_id: Annotated[UUID, Query(description="The encrypted conversation it is for")],
) -> MediaOut:
    """Store an end-to-end-encrypted attachment as it is (no processing).

    Members of the conversation may fetch it as variant `blob`; the key that
    opens it travels inside the message envelope (docs/PROTOCOL.md).
    """
    return await services.media.upload_blob(
        principal.user_id, str(conversation_id), request.stream(), _declared_length(request)
    )


@router.get("/media", response_model=MediaPage)
async def list_media(
    principal: PrincipalDep,
    services: ServicesDep,
    before: Annotated[
        str | None, Query(max_length=36, description="A media id from the last page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> MediaPage:
    """Your uploads, newest first."""
    return await services.media.list_mine(principal.user_id, before, limit)


@router.get("/media/usage", response_model=UsageOut)
async def media_usage(principal: PrincipalDep, services: ServicesDep) -> UsageOut:
    """Bytes you have stored and your quota."""
    return await services.media.usage(principal.user_id)


@router.get("/media/{media_id}", response_model=MediaOut, responses=errors(404))
async def get_media(media_id: UUID, principal: PrincipalDep, services: ServicesDep) -> MediaOut:
    """Sizes, placeholder and variants of a media item you may see."""
    return await services.media.get(principal.user_id, str(media_id))


@router.delete("/media/{media_id}", status_code=204, responses=errors(404))
async def delete_media(media_id: UUID, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Delete your upload; avatars showing it are cleared, messages keep a dead reference."""
    await services.media.delete(principal.user_id, str(media_id))
    return Response(status_code=204)


_DOWNLOAD: dict[str, Any] = {
    "response_model": None,
    "response_class": Response,
    "responses": {
        200: _VARIANT_BYTES,
        206: {"description": "Part of the variant, as `Content-Range` says"},
        304: {"description": "`If-None-Match` matched: your copy is current"},
        **errors(
            (404, "No such media or variant, or not yours to see"),
            (416, "The `Range` starts past the end (`range_not_satisfiable`)"),
        ),
    },
}


@router.get("/media/{media_id}/{variant}", operation_id="download_media_variant", **_DOWNLOAD)
@router.head("/media/{media_id}/{variant}", operation_id="head_media_variant", **_DOWNLOAD)
async def download(
    media_id: UUID,
    variant: Annotated[str, Path(max_length=16)],
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """One variant's bytes: `full`, `640`, `320`, `160` (WebP; add `.jpg` for JPEG), or `blob`.

    Strong ETag (the SHA-256 of the bytes), `If-None-Match`, single `Range`
    requests (206) and `If-Range` are supported.
    """
    found = await services.media.variant(principal.user_id, str(media_id), variant)
    etag = f'"{found.key}"'
    headers = {
        "ETag": etag,
        "Cache-Control": _CACHE,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
    }
    matches = _etags(request.headers.get("if-none-match"))
    if etag in matches or "*" in matches:
        return Response(status_code=304, headers=headers)
    size = found.bytes
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's copy is stale: send it all
    try:
        byte_range = parse_byte_range(range_header, size)
    except ValueError:
        return error_response(
            416,
            "range_not_satisfiable",
            f"the range is outside the {size} bytes of this variant",
            {"Accept-Ranges": "bytes", "Content-Range": f"bytes */{size}"},
        )
    status, start, length = 200, 0, size
    if byte_range is not None:
        status, (start, length) = 206, byte_range
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=found.content_type)
    body = await _opened(services.media.read(found.key, start, length))
    return StreamingResponse(
        body, status_code=status, headers=headers, media_type=found.content_type
    )


async def _opened(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Read the first chunk before answering, so a missing blob is a 404, not a cut stream."""
    iterator = aiter(chunks)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in iterator:
            yield chunk

    return rest()


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


@router.put("/me/avatar", status_code=204)
async def set_avatar(
    body: AvatarRequest, principal: PrincipalDep, services: ServicesDep
) -> Response:
    """Show one of your uploaded images as your avatar (every signed-in user may fetch it)."""
    await services.media.set_avatar(principal.user_id, str(body.media_id))
    return Response(status_code=204)


@router.delete("/me/avatar", status_code=204)
async def clear_avatar(principal: PrincipalDep, services: ServicesDep) -> Response:
    await services.media.set_avatar(principal.user_id, None)
    return Response(status_code=204)
