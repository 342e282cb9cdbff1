"""Public shapes of media."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class VariantOut(BaseModel):
    name: str = Field(description="`full.webp`, `full.jpg`, `640.webp`, ... or `blob`")
    content_type: str
    width: int
    height: int
    bytes: int
    url: str = Field(description="Path to GET it (with the access token)")


class MediaOut(BaseModel):
    id: str
    kind: Literal["image", "blob"]
    owner_id: str
    format: str = Field(description="Format sniffed from the upload; blank for blobs")
    width: int = Field(description="Upright width of the full variant")
    height: int
    animated: bool = Field(description="The full WebP variant keeps the animation")
    placeholder: str = Field(description="ThumbHash, base64, to paint before loading")
    bytes: int = Field(description="Stored bytes, all variants: what counts against the quota")
    public: bool = Field(description="An avatar: every signed-in user may fetch it")
    created_at: datetime
    variants: list[VariantOut]


class MediaPage(BaseModel):
    media: list[MediaOut]
    next_before: str | None = Field(
        description="Pass as `before` for the next (older) page; null at the end"
    )


class UsageOut(BaseModel):
    used_bytes: int
    quota_bytes: int
    items: int


class AvatarRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    media_id: UUID = Field(description="An image you uploaded")
