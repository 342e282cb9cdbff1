"""Media in the SDK: image uploads, downloads, avatars, and encrypted attachments.

In a plaintext conversation an image goes to the server, which makes the
variants (``upload_image`` then ``send_image``). In an encrypted one the
server must not see it: the SDK makes its own thumbnail with pyvips, encrypts
both with fresh keys (``parley-attachment-v1``), uploads the two opaque blobs
and sends an envelope whose payload describes them (``send_attachment``).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pyvips

from crypto.attachments import AttachmentSecret, decrypt_attachment, encrypt_attachment

MESSAGE_SEND = "message:send"
# The long side of the thumbnail an encrypted image carries.
ATTACHMENT_THUMBNAIL = 320


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _content(data: bytes | Path) -> bytes:
    return data.read_bytes() if isinstance(data, Path) else data


def _thumbnail(data: bytes) -> tuple[bytes, int, int, int, int] | None:
    """(WebP thumbnail, its width, height, the image's width, height); None if not an image."""
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
        width, height = image.width, image.height
        if image.get_typeof("orientation") and image.get("orientation") in (5, 6, 7, 8):
            width, height = height, width
        thumb = pyvips.Image.thumbnail_buffer(
            data, ATTACHMENT_THUMBNAIL, height=ATTACHMENT_THUMBNAIL, size="down"
        )
        webp = thumb.webpsave_buffer(Q=75, keep="none")
    except pyvips.Error:
        return None
    return webp, thumb.width, thumb.height, width, height


class MediaMethods:
    """HTTP calls for media; mixed into ParleyClient."""

    if TYPE_CHECKING:
        http: httpx.AsyncClient

        async def request(
            self,
            method: str,
            path: str,
            *,
            json: Any = None,
            params: dict[str, Any] | None = None,
            auth: bool = True,
        ) -> Any: ...

        async def fresh_access_token(self) -> str: ...

        @staticmethod
        def _decode(response: httpx.Response) -> Any: ...

        async def emit(self, event: str, payload: Any, *, timeout: float = 10.0) -> Any: ...

        async def send_encrypted(
            self,
            conversation_id: str,
            payload: dict[str, Any],
            *,
            client_msg_id: str | None = None,
            timeout: float = 10.0,
        ) -> dict[str, Any]: ...

    async def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.fresh_access_token()}"}

    # -- server-processed images ----------------------------------------------

    async def upload_image(self, data: bytes | Path) -> dict[str, Any]:
        """Upload an image; the server's description of it with its variants."""
        body = await asyncio.to_thread(_content, data)
        response = await self.http.post(
            "/v1/media",
            content=body,
            headers={**await self._auth(), "Content-Type": "application/octet-stream"},
        )
        result: dict[str, Any] = self._decode(response)
        return result

    async def media(self, media_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"/v1/media/{media_id}")
        return result

    async def my_media(self, *, limit: int = 50, before: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if before:
            params["before"] = before
        result: dict[str, Any] = await self.request("GET", "/v1/media", params=params)
        return result

    async def media_usage(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/media/usage")
        return result

    async def download_media(
        self, media_id: str, variant: str = "full", *, byte_range: tuple[int, int] | None = None
    ) -> bytes:
        """A variant's bytes (``full``, ``640``, ``320``, ``160``, ``.jpg`` forms, ``blob``).

        ``byte_range`` is (first, last), inclusive, as in an HTTP Range header.
        """
        headers = await self._auth()
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        response = await self.http.get(f"/v1/media/{media_id}/{variant}", headers=headers)
        if response.status_code >= 400:
            self._decode(response)  # raises ParleyApiError
        return response.content

    async def delete_media(self, media_id: str) -> None:
        await self.request("DELETE", f"/v1/media/{media_id}")

    async def set_avatar(self, media_id: str | None) -> None:
        """Show one of your uploaded images as your avatar; None clears it."""
        if media_id is None:
            await self.request("DELETE", "/v1/me/avatar")
        else:
            await self.request("PUT", "/v1/me/avatar", json={"media_id": media_id})

    async def send_image(
        self,
        conversation_id: str,
        media_id: str,
        *,
        caption: str = "",
        client_msg_id: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """An image message in a plaintext conversation (the image uploaded first)."""
        payload = {
            "conversation_id": conversation_id,
            "client_msg_id": client_msg_id or uuid.uuid4().hex,
            "kind": "image",
            "body": {"media_id": media_id, "caption": caption},
        }
        result: dict[str, Any] = await self.emit(MESSAGE_SEND, payload, timeout=timeout)
        return result

    # -- encrypted attachments ------------------------------------------------

    async def _upload_blob(self, conversation_id: str, blob: bytes) -> str:
        response = await self.http.post(
            "/v1/media/blobs",
            params={"conversation_id": conversation_id},
            content=blob,
            headers={**await self._auth(), "Content-Type": "application/octet-stream"},
        )
        media_id: str = self._decode(response)["id"]
        return media_id

    async def upload_attachment(
        self,
        conversation_id: str,
        data: bytes | Path,
        *,
        content_type: str = "application/octet-stream",
        name: str = "",
    ) -> dict[str, Any]:
        """Encrypt and upload a file for an encrypted conversation; its descriptor.

        The descriptor (docs/PROTOCOL.md, "Encrypted attachments") holds the
        keys, so it must only ever travel inside an envelope. Images get an
        encrypted WebP thumbnail made here, and their size.
        """
        plaintext = await asyncio.to_thread(_content, data)
        blob, secret = await asyncio.to_thread(encrypt_attachment, plaintext)
        descriptor: dict[str, Any] = {
            "v": 1,
            "media_id": await self._upload_blob(conversation_id, blob),
            "key": _b64(secret.key),
            "sha256": _b64(secret.sha256),
            "size": len(plaintext),
            "content_type": content_type,
            "name": name,
        }
        thumb = await asyncio.to_thread(_thumbnail, plaintext)
        if thumb is not None:
            webp, t_width, t_height, width, height = thumb
            thumb_blob, thumb_secret = await asyncio.to_thread(encrypt_attachment, webp)
            descriptor.update(width=width, height=height)
            descriptor["thumbnail"] = {
                "media_id": await self._upload_blob(conversation_id, thumb_blob),
                "key": _b64(thumb_secret.key),
                "sha256": _b64(thumb_secret.sha256),
                "size": len(webp),
                "content_type": "image/webp",
                "width": t_width,
                "height": t_height,
            }
        return descriptor

    async def send_attachment(
        self,
        conversation_id: str,
        data: bytes | Path,
        *,
        content_type: str = "application/octet-stream",
        name: str = "",
        caption: str = "",
        client_msg_id: str | None = None,
    ) -> dict[str, Any]:
        """Upload an encrypted attachment and send it in an envelope; the ack."""
        descriptor = await self.upload_attachment(
            conversation_id, data, content_type=content_type, name=name
        )
        payload = {"type": "attachment", "text": caption, "attachment": descriptor}
        return await self.send_encrypted(conversation_id, payload, client_msg_id=client_msg_id)

    async def download_attachment(
        self, descriptor: dict[str, Any], *, thumbnail: bool = False
    ) -> bytes:
        """Fetch, check and decrypt an attachment (or its thumbnail) from its descriptor."""
        part = descriptor["thumbnail"] if thumbnail else descriptor
        blob = await self.download_media(part["media_id"], "blob")
        secret = AttachmentSecret(
            key=base64.b64decode(part["key"]), sha256=base64.b64decode(part["sha256"])
        )
        return await asyncio.to_thread(decrypt_attachment, blob, secret)
